"""Image-folder helpers: finding images, reading their class, loading and augmenting them.

Used by `libml.data.builders.folders` (`create_datasets.py custom`) and by inference
(`libml.serve.inference`). Images are uint8 numpy arrays [H, W, C] with C = 1 (grayscale) or
3 (RGB). Nothing here touches TensorFlow.
"""

import os
import re

from libml.errors import UserError

import numpy as np
from PIL import Image

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.gif', '.webp')
GRAYSCALE_MODES = frozenset({'1', 'L', 'LA', 'I', 'I;16', 'I;16B', 'I;16L', 'I;16N', 'F'})
SIXTEEN_BIT_MODES = frozenset({'I;16', 'I;16B', 'I;16L', 'I;16N'})
_FLAT_NAME = re.compile(r'^\d+_(?P<cls>.+)$')


def is_image(path):
    """True when `path` has one of IMAGE_EXTENSIONS (any case)."""
    return os.path.splitext(path)[1].lower() in IMAGE_EXTENSIONS


def list_images(directory):
    """Sorted paths of every image under `directory`, recursively.

    Hidden files and folders (names starting with '.') are skipped. UserError if
    `directory` is not a folder.
    """
    if not os.path.isdir(directory):
        raise UserError(f'image folder not found: {directory}')
    paths = []
    for parent, folders, files in os.walk(directory):
        folders[:] = [f for f in folders if not f.startswith('.')]
        paths.extend(os.path.join(parent, f) for f in files if is_image(f) and not f.startswith('.'))
    return sorted(paths)


def class_of(path, root):
    """The class name of image `path` found under folder `root`, or None if it has none.

    An image inside a sub-folder of `root` (`root/dog/x.jpg`, `root/a/dog/x.jpg`) belongs to
    its parent folder's class; an image directly in `root` needs a flat name
    `<index>_<class>.<ext>` (`12_hot_dog.png` -> 'hot_dog').
    """
    parent = os.path.dirname(os.path.abspath(path))
    if parent != os.path.abspath(root):
        return os.path.basename(parent)
    match = _FLAT_NAME.match(os.path.splitext(os.path.basename(path))[0])
    return match['cls'] if match else None


def _bad_image(path, error):
    message = ' '.join(str(error).split()) or type(error).__name__
    return UserError(f'cannot read image {path}: {message} (fix or remove it, or pass --skip_bad_images)')


def probe_image(path):
    """(height, width, is_grayscale) of an image, read from its header only.

    UserError naming the file if it is not a readable image.
    """
    try:
        with Image.open(path) as image:
            return image.height, image.width, image.mode in GRAYSCALE_MODES
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise _bad_image(path, e) from e


def to_8bit(image):
    """A 16-bit grayscale PIL image (PNG) -> 8-bit 'L' keeping the high byte (v >> 8); others unchanged.

    Pillow's own convert('L') clips 16-bit values at 255 (a mid-grey 32047/65535 turns white),
    while it reads 16-bit RGB PNGs by their high byte: this gives grayscale the same scale.
    Mode 'I' is taken as 16-bit when the file is a PNG (older Pillow opens 16-bit gray so).
    """
    if image.mode in SIXTEEN_BIT_MODES or (image.mode == 'I' and image.format == 'PNG'):
        values = np.asarray(image).astype(np.int64)  # I;16B arrives as big-endian uint16
        return Image.fromarray((np.clip(values, 0, 65535) >> 8).astype(np.uint8))
    return image


def load_image(path, size=None, channels=None):
    """Decodes an image file -> uint8 array [H, W, C].

    channels: 1 (grayscale), 3 (RGB) or None (1 for grayscale files, 3 for the rest).
    16-bit images are scaled to 8 bits (value >> 8), never clipped.
    size: resize to size x size with bilinear filtering (no resize when None).
    UserError naming the file if it is corrupt or unreadable.
    """
    try:
        with Image.open(path) as image:
            if channels is None:
                channels = 1 if image.mode in GRAYSCALE_MODES else 3
            image = to_8bit(image).convert('L' if channels == 1 else 'RGB')
            if size is not None and image.size != (size, size):
                image = image.resize((size, size), Image.BILINEAR)
            array = np.asarray(image, np.uint8)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise _bad_image(path, e) from e
    return array[:, :, None] if array.ndim == 2 else array


def random_affine(image, rng, max_rotate=15.0, max_shift=0.1, max_zoom=0.1, flip=True):
    """Random flip, rotation, shift and zoom of a uint8 image [H, W, C] -> same shape and dtype.

    Rotation up to `max_rotate` degrees, shift up to `max_shift` of each side, zoom by a
    factor in [1 - max_zoom, 1 + max_zoom]; pixels from outside take the nearest edge value;
    bilinear sampling. `rng` is a numpy Generator.
    """
    height, width = image.shape[:2]
    angle = np.deg2rad(rng.uniform(-max_rotate, max_rotate))
    zoom = rng.uniform(1 - max_zoom, 1 + max_zoom)
    shift = rng.uniform(-max_shift, max_shift, size=2) * (height, width)
    mirror = flip and rng.random() < 0.5
    # Inverse map: output pixel (y, x) samples the input at centre + R(-angle) (p - centre - shift) / zoom.
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float64)
    cy, cx = (height - 1) / 2, (width - 1) / 2
    dy, dx = (rows - cy - shift[0]) / zoom, (cols - cx - shift[1]) / zoom
    cos, sin = np.cos(angle), np.sin(angle)
    src_y = np.clip(cy + cos * dy - sin * dx, 0, height - 1)
    src_x = np.clip(cx + sin * dy + cos * dx, 0, width - 1)
    if mirror:
        src_x = width - 1 - src_x
    y0, x0 = np.floor(src_y).astype(int), np.floor(src_x).astype(int)
    y1, x1 = np.minimum(y0 + 1, height - 1), np.minimum(x0 + 1, width - 1)
    wy, wx = (src_y - y0)[:, :, None], (src_x - x0)[:, :, None]
    pixels = image.astype(np.float64)
    top = pixels[y0, x0] * (1 - wx) + pixels[y0, x1] * wx
    bottom = pixels[y1, x0] * (1 - wx) + pixels[y1, x1] * wx
    return np.clip(np.round(top * (1 - wy) + bottom * wy), 0, 255).astype(np.uint8)


def random_erase(image, rng, area=(0.02, 0.33), aspect=(0.3, 3.3)):
    """Random erasing: a rectangle of `area` share and `aspect` ratio filled with uniform noise.

    uint8 [H, W, C] -> a new array of the same shape; `rng` is a numpy Generator.
    """
    height, width = image.shape[:2]
    target = rng.uniform(*area) * height * width
    ratio = np.exp(rng.uniform(np.log(aspect[0]), np.log(aspect[1])))
    h = int(np.clip(round(np.sqrt(target * ratio)), 1, height))
    w = int(np.clip(round(np.sqrt(target / ratio)), 1, width))
    top, left = rng.integers(0, height - h + 1), rng.integers(0, width - w + 1)
    erased = image.copy()
    erased[top : top + h, left : left + w] = rng.integers(0, 256, size=(h, w, image.shape[2]), dtype=np.uint8)
    return erased
