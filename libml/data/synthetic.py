"""Synthetic images for the benchmarks: as compressible as photographs, from a seeded generator."""

import numpy as np


def synthetic_images(rng, count, size=32, channels=3):
    """uint8 [count, size, size, channels]: smooth noise (a grid of size/4 cells upsampled 4x and
    blurred, plus grain) from the numpy Generator `rng`.

    PNG-encoded, a 32x32x3 image takes about 2.6 KB, like a real CIFAR-10 image (pure noise: 3 KB+).
    """
    cells = -(-size // 4)
    coarse = rng.integers(0, 256, (count, cells, cells, channels)).astype(np.float32)
    image = np.repeat(np.repeat(coarse, 4, axis=1), 4, axis=2)[:, :size, :size]
    image = (image + np.roll(image, 1, 1) + np.roll(image, -1, 1) + np.roll(image, 1, 2) + np.roll(image, -1, 2)) / 5
    image += rng.normal(0, 8, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)
