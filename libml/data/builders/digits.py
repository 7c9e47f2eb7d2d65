"""scikit-learn's bundled 8x8 handwritten digits, upsampled to 16x16: needs no network."""

from libml.data.builders.common import Built, pairs

import numpy as np
from PIL import Image

SPLITS = ('train', 'test')
SIZE = 16
TEST_COUNT = 500


def upsample(image, size):
    """uint8 [H, W] -> uint8 [size, size, 1], bilinear."""
    return np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))[:, :, None]


def digits():
    """The 1,797 digits (values 0..16) -> 16x16 grayscale 0..255, stratified 1,297 train / 500 test."""
    from sklearn.datasets import load_digits  # imported here: scikit-learn takes a second to load
    from sklearn.model_selection import train_test_split

    data = load_digits()
    pixels = np.round(data.images * (255 / 16)).astype(np.uint8)
    upsampled = np.stack([upsample(p, SIZE) for p in pixels])
    train, test = train_test_split(np.arange(len(pixels)), test_size=TEST_COUNT, stratify=data.target, random_state=0)
    return Built(
        {'train': pairs(upsampled[train], data.target[train]), 'test': pairs(upsampled[test], data.target[test])},
        [str(d) for d in range(10)],
        {},
    )
