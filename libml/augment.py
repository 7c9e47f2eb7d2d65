"""Image augmentations as stateless tf ops, usable inside `tf.data.Dataset.map`.

Every augmentation maps (image float32 [H, W, C] in [0, 1], seed int64 [2]) -> image of the
same shape and range. The same seed always gives the same result, so pipelines stay
reproducible and resumable.
"""

import tensorflow as tf

from libml.utils import UserError


def _seeds(seed, n):
    return tf.unstack(tf.random.experimental.stateless_split(seed, n))


def mirror(image, seed):
    """Random left-right flip with probability 1/2."""
    return tf.image.stateless_random_flip_left_right(image, seed)


def shift(image, seed, pixels):
    """Random translation by up to `pixels` in each direction, borders filled by reflection."""
    padded = tf.pad(image, [[pixels, pixels], [pixels, pixels], [0, 0]], mode='REFLECT')
    return tf.image.stateless_random_crop(padded, tf.shape(image), seed)


def erase(image, seed, size):
    """Cutout: a `size`x`size` square (clipped at the borders) at a random centre set to 0.5."""
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    centre = tf.random.stateless_uniform([2], seed, 0, 1 << 30, dtype=tf.int32) % tf.stack([height, width])
    top_left = centre - size // 2
    rows = tf.range(height)[:, None, None]
    cols = tf.range(width)[None, :, None]
    inside = ((rows >= top_left[0]) & (rows < top_left[0] + size) &
              (cols >= top_left[1]) & (cols < top_left[1] + size))
    return tf.where(inside, tf.constant(0.5, image.dtype), image)


def color_jitter(image, seed):
    """Random brightness and contrast; hue and saturation too for RGB images."""
    s = _seeds(seed, 4)
    image = tf.image.stateless_random_brightness(image, 0.2, s[0])
    image = tf.image.stateless_random_contrast(image, 0.7, 1.3, s[1])
    if image.shape[-1] == 3:
        image = tf.image.stateless_random_saturation(image, 0.7, 1.3, s[2])
        image = tf.image.stateless_random_hue(image, 0.05, s[3])
    return tf.clip_by_value(image, 0.0, 1.0)


def none(image, seed):
    del seed
    return image


def cifar10(image, seed):
    """Mirror + 4-pixel reflect shift."""
    s = _seeds(seed, 2)
    return shift(mirror(image, s[0]), s[1], 4)


def svhn(image, seed):
    """4-pixel reflect shift only (mirrored digits change meaning)."""
    return shift(image, seed, 4)


def stl10(image, seed):
    """Mirror + 12-pixel reflect shift (for 96x96 images)."""
    s = _seeds(seed, 2)
    return shift(mirror(image, s[0]), s[1], 12)


def color(image, seed):
    """Mirror, colour jitter, 4-pixel shift."""
    s = _seeds(seed, 3)
    return shift(color_jitter(mirror(image, s[0]), s[1]), s[2], 4)


def cutout(image, seed):
    """Mirror + 4-pixel shift + erasing a square of half the image side."""
    s = _seeds(seed, 2)
    return erase(cifar10(image, s[0]), s[1], max(1, image.shape[0] // 2))


AUGMENTATIONS = {'none': none, 'cifar10': cifar10, 'svhn': svhn, 'stl10': stl10, 'stl-10': stl10,
                 'color': color, 'cutout': cutout}


def get(name):
    """The augmentation called `name`; UserError listing the choices otherwise."""
    if name not in AUGMENTATIONS:
        raise UserError(f'unknown augmentation {name!r}: choose one of '
                        + ', '.join(sorted(set(AUGMENTATIONS) - {'stl-10'})))
    return AUGMENTATIONS[name]
