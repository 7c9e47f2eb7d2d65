"""Image-folder helpers: finding images, reading their class, loading and augmenting them.

Used by `libml.data.builders.folders` (`create_datasets.py custom`) and by inference
(`libml.serve.inference`). Images are uint8 numpy arrays [H, W, C] with C = 1 (grayscale) or
3 (RGB). Nothing here touches TensorFlow.
"""

import os
import re
import stat as stat_lib

from libml.errors import UserError, warn

import numpy as np
from PIL import Image

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.gif', '.webp')
GRAYSCALE_MODES = frozenset({'1', 'L', 'LA', 'I', 'I;16', 'I;16B', 'I;16L', 'I;16N', 'F'})
SIXTEEN_BIT_MODES = frozenset({'I;16', 'I;16B', 'I;16L', 'I;16N'})
_FLAT_NAME = re.compile(r'^\d+_(?P<cls>.+)$')


def pixel_limit():
    """The most pixels an image may have: Pillow refuses more as a decompression bomb (2 x Image.MAX_IMAGE_PIXELS)."""
    return 2 * Image.MAX_IMAGE_PIXELS if Image.MAX_IMAGE_PIXELS else np.iinfo(np.int64).max


def is_image(path):
    """True when `path` has one of IMAGE_EXTENSIONS (any case)."""
    return os.path.splitext(path)[1].lower() in IMAGE_EXTENSIONS


def list_images(directory):
    """Sorted paths of every image under `directory`, recursively, links followed.

    Hidden files and folders (names starting with '.') are skipped; so are, with a warning, links
    that lead nowhere, files that are not regular files (FIFOs, sockets, devices: reading one could
    block forever) and folders met twice through links (a loop). UserError if `directory` is not a
    folder.
    """
    if not os.path.isdir(directory):
        what = 'is a file, not a folder of images' if os.path.exists(directory) else 'not found'
        raise UserError(f'image folder {directory}: {what}')
    paths, seen = [], set()
    _first_visit(directory, seen)
    for parent, folders, files in os.walk(directory, followlinks=True):
        folders[:] = [f for f in folders if not f.startswith('.') and _first_visit(os.path.join(parent, f), seen)]
        candidates = (os.path.join(parent, f) for f in files if is_image(f) and not f.startswith('.'))
        paths.extend(p for p in candidates if _regular(p))
    return sorted(paths)


def _first_visit(folder, seen):
    """False, with a warning, when `folder` (reached through a link) was listed already: a loop."""
    stat = os.stat(folder)
    key = (stat.st_dev, stat.st_ino)
    if key in seen:
        warn(f'skipping {folder}: a link to a folder listed already (a loop)')
        return False
    seen.add(key)
    return True


def _regular(path):
    """Whether `path` is (or links to) a regular file; warns and returns False otherwise."""
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        warn(f'skipping {path}: {e.strerror} (a link that leads nowhere?)')
        return False
    if not stat_lib.S_ISREG(mode):
        warn(f'skipping {path}: not a regular file (a FIFO, socket or device)')
        return False
    return True


def class_of(path, root):
    """The class name of image `path` found under folder `root`, or None if it has none.

    An image inside a sub-folder of `root` belongs to the class of that sub-folder, however deep
    it sits (`root/dog/x.jpg` and `root/dog/2019/x.jpg` -> 'dog'); an image directly in `root`
    needs a flat name `<index>_<class>.<ext>` (`12_hot_dog.png` -> 'hot_dog').
    """
    relative = os.path.relpath(os.path.abspath(path), os.path.abspath(root))
    if os.sep in relative:
        return relative.split(os.sep)[0]
    match = _FLAT_NAME.match(os.path.splitext(relative)[0])
    return match['cls'] if match else None


class BadImage(UserError):
    """An image file that cannot be read: its `path`, the `reason`, what to do (`remedy`)."""

    def __init__(self, path, reason, remedy='fix or remove it'):
        super().__init__(f'cannot read image {path}: {reason} ({remedy})')
        self.path, self.reason = path, reason


def _bad_image(path, error):
    return BadImage(path, ' '.join(str(error).split()) or type(error).__name__)


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
