"""Image augmentations as stateless tf ops, usable inside `tf.data.Dataset.map`.

Every augmentation maps (image float32 [H, W, C] in [0, 1], seed int64 [2]) -> image of the
same shape and range, C = 1 or 3 (known statically). The same seed always gives the same
result, so pipelines stay reproducible and resumable.

Three different things are called "cutout" in this project; the names below say which is which:
- `--augment=cutout` (`cifar10_grey_square`): the weak augmentation mirror + 4-pixel shift,
  then a grey square of FIXED side half the image side (`grey_square`), online at every draw.
- `cutout` (FixMatch's, part of `strong_view`): a grey square of RANDOM side up to half the
  image side, online.
- `create_datasets.py --cutout`: random erasing of a rectangle with uniform NOISE, applied
  ONCE to the images when the record files are built (`libml.data.image_files.random_erase`), not here.
"""

import math

from libml.errors import UserError

import tensorflow as tf

GREY = 0.5  # fill of the squares and of the pixels that geometric ops bring in from outside


def _plain_python(fn):
    """Marks `fn` for AutoGraph to call as is: it has no tensor-dependent Python control flow, and
    converting RandAugment's 14 ops costs seconds when a `Dataset.map` is traced."""
    return tf.autograph.experimental.do_not_convert(fn)


def _seeds(seed, n):
    return tf.unstack(tf.random.experimental.stateless_split(seed, n))


def _uniform(seed):
    """A float32 scalar uniform in [0, 1)."""
    return tf.random.stateless_uniform([], seed)


# -- weak augmentations (the --augment choices)


def mirror(image, seed):
    """Random left-right flip with probability 1/2."""
    return tf.image.stateless_random_flip_left_right(image, seed)


def shift(image, seed, pixels):
    """Random translation by up to `pixels` in each direction, borders filled by reflection."""
    padded = tf.pad(image, [[pixels, pixels], [pixels, pixels], [0, 0]], mode='REFLECT')
    return tf.image.stateless_random_crop(padded, tf.shape(image), seed)


def grey_square(image, seed, size):
    """A `size`x`size` square (int or int32 scalar; clipped at the borders) at a uniform random centre set to 0.5."""
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    centre = tf.random.stateless_uniform([2], seed, 0, 1 << 30, dtype=tf.int32) % tf.stack([height, width])
    top_left = centre - size // 2
    rows = tf.range(height)[:, None, None]
    cols = tf.range(width)[None, :, None]
    inside = (rows >= top_left[0]) & (rows < top_left[0] + size) & (cols >= top_left[1]) & (cols < top_left[1] + size)
    return tf.where(inside, tf.constant(GREY, image.dtype), image)


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


def cifar10_grey_square(image, seed):
    """`--augment=cutout`: mirror + 4-pixel shift, then a grey square of fixed side half the image side."""
    s = _seeds(seed, 2)
    return grey_square(cifar10(image, s[0]), s[1], max(1, image.shape[0] // 2))


AUGMENTATIONS = {
    'none': none,
    'cifar10': cifar10,
    'svhn': svhn,
    'stl10': stl10,
    'stl-10': stl10,
    'color': color,
    'cutout': cifar10_grey_square,
}


def get(name):
    """The augmentation called `name`; UserError listing the choices otherwise."""
    if name not in AUGMENTATIONS:
        raise UserError(
            f'unknown augmentation {name!r}: choose one of ' + ', '.join(sorted(set(AUGMENTATIONS) - {'stl-10'}))
        )
    return AUGMENTATIONS[name]


# -- RandAugment's operations, each with an explicit magnitude


def _to_levels(image):
    """[0, 1] floats -> the nearest of the 256 levels 0..255, as float32."""
    return tf.floor(image * 255.0 + 0.5)


def _grey(image):
    """Luminance [H, W, 1] (ITU-R 601: 0.299 R + 0.587 G + 0.114 B); the image itself if C = 1."""
    if image.shape[-1] == 1:
        return image
    return tf.tensordot(image, tf.constant([0.299, 0.587, 0.114], image.dtype), axes=1)[..., None]


def _blend(degenerate, image, factor):
    """degenerate + factor * (image - degenerate), clipped to [0, 1] (PIL ImageEnhance's rule)."""
    return tf.clip_by_value(degenerate + factor * (image - degenerate), 0.0, 1.0)


def auto_contrast(image):
    """Each channel rescaled linearly so its min..max becomes 0..1; a constant channel is kept."""
    low = tf.reduce_min(image, axis=[0, 1], keepdims=True)
    high = tf.reduce_max(image, axis=[0, 1], keepdims=True)
    span = high - low
    return tf.where(span > 0, (image - low) / tf.where(span > 0, span, 1.0), image)


def adjust_brightness(image, factor):
    """Blend with black: factor 0 gives black, 1 the image."""
    return _blend(tf.zeros_like(image), image, factor)


def adjust_color(image, factor):
    """Blend with the image's greyscale: factor 0 gives grey, 1 the image. Identity for C = 1."""
    if image.shape[-1] == 1:
        return image
    return _blend(_grey(image), image, factor)


def adjust_contrast(image, factor):
    """Blend with the mean luminance (one scalar for the image): factor 0 gives flat grey, 1 the image."""
    return _blend(tf.reduce_mean(_grey(image)), image, factor)


def adjust_sharpness(image, factor):
    """Blend with a smoothed image: factor 0 gives smoothed, 1 the image, > 1 sharpens.

    Smoothing: 3x3 kernel [[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13 on inner pixels; the one-pixel
    border stays unsmoothed (as in PIL). Needs H, W >= 3.
    """
    kernel = tf.constant([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]]) / 13.0
    planes = tf.transpose(image, [2, 0, 1])[..., None]  # [C, H, W, 1]: channels as a batch
    smooth = tf.nn.conv2d(planes, kernel[:, :, None, None], strides=1, padding='VALID')
    smooth = tf.transpose(tf.pad(smooth[..., 0], [[0, 0], [1, 1], [1, 1]]), [1, 2, 0])
    inner = tf.pad(tf.ones(tf.shape(image)[:2] - 2, tf.bool), [[1, 1], [1, 1]], constant_values=False)
    return _blend(tf.where(inner[:, :, None], smooth, image), image, factor)


def equalize(image):
    """Per-channel histogram equalisation on 256 levels.

    With q the pixel levels (round(255 x)) of a channel of N pixels, cdf(v) = #{q <= v} and
    m = cdf(min q): level v -> round(255 (cdf(v) - m) / (N - m)). A constant channel is kept (as its levels).
    Output = new level / 255.
    """
    channels = image.shape[-1]
    levels = tf.cast(_to_levels(image), tf.int32)
    flat = tf.transpose(tf.reshape(levels, [-1, channels]))  # [C, N]
    hist = tf.math.bincount(flat, minlength=256, maxlength=256, axis=-1)  # [C, 256]
    cdf = tf.cast(tf.cumsum(hist, axis=-1), tf.float32)
    first = tf.reduce_min(tf.where(cdf > 0, cdf, tf.float32.max), axis=-1, keepdims=True)
    total = cdf[:, -1:]
    denominator = total - first
    lut = tf.floor(255.0 * (cdf - first) / tf.where(denominator > 0, denominator, 1.0) + 0.5)
    lut = tf.where(denominator > 0, lut, tf.range(256, dtype=tf.float32)[None])
    mapped = tf.gather(lut, flat, batch_dims=1)  # [C, N]
    return tf.reshape(tf.transpose(mapped), tf.shape(image)) / 255.0


def posterize(image, bits):
    """Keep the top `bits` (int32 scalar, 1..8) bits of each pixel's 8-bit level."""
    step = tf.cast(tf.bitwise.left_shift(1, 8 - bits), tf.float32)
    return tf.floor(_to_levels(image) / step) * step / 255.0


def solarize(image, threshold):
    """Invert (x -> 1 - x) the pixels >= threshold."""
    return tf.where(image >= threshold, 1.0 - image, image)


def _project(image, matrix):
    """Output pixel (col x, row y) <- input at (a0 x + a1 y + a2, b0 x + b1 y + b2); bilinear, grey outside.

    matrix: float32 [6] = (a0, a1, a2, b0, b1, b2).
    """
    transform = tf.concat([tf.cast(matrix, tf.float32), tf.zeros([2])], 0)[None]
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=image[None],
        transforms=transform,
        output_shape=tf.shape(image)[:2],
        fill_value=GREY,
        interpolation='BILINEAR',
        fill_mode='CONSTANT',
    )[0]
    return tf.ensure_shape(out, image.shape)


def _centre(image):
    """(x, y) = (col, row) coordinates of the image centre, float32."""
    size = tf.cast(tf.shape(image)[:2], tf.float32)
    return (size[1] - 1) / 2, (size[0] - 1) / 2


def rotate(image, degrees):
    """Rotation by `degrees` counter-clockwise as displayed (row 0 at the top) about the centre."""
    theta = tf.cast(degrees, tf.float32) * (math.pi / 180)
    cos, sin = tf.cos(theta), tf.sin(theta)
    cx, cy = _centre(image)
    return _project(image, tf.stack([cos, -sin, cx - cos * cx + sin * cy, sin, cos, cy - sin * cx - cos * cy]))


def shear_x(image, amount):
    """Row y moves right by amount * (y - centre row) pixels (rows shift, the centre row stays)."""
    amount = tf.cast(amount, tf.float32)
    _, cy = _centre(image)
    return _project(image, tf.stack([1.0, -amount, amount * cy, 0.0, 1.0, 0.0]))


def shear_y(image, amount):
    """Column x moves down by amount * (x - centre column) pixels."""
    amount = tf.cast(amount, tf.float32)
    cx, _ = _centre(image)
    return _project(image, tf.stack([1.0, 0.0, 0.0, -amount, 1.0, amount * cx]))


def translate(image, dx, dy):
    """Content moves right by dx and down by dy pixels (float32 scalars); grey comes in."""
    return _project(image, tf.stack([1.0, 0.0, -tf.cast(dx, tf.float32), 0.0, 1.0, -tf.cast(dy, tf.float32)]))


def _between(low, high):
    return lambda u: low + u * (high - low)


def _size(image, axis):
    return tf.cast(tf.shape(image)[axis], tf.float32)


# RandAugment as in FixMatch (Sohn et al. 2020, appendix, table "List of transformations used in
# RandAugment"): name, magnitude range, op(image, u) with u uniform in [0, 1) mapped onto the range.
_factor = _between(0.05, 0.95)
_shear = _between(-0.3, 0.3)
_shift = _between(-0.3, 0.3)
RANDAUGMENT_OPS = (
    ('AutoContrast', None, lambda x, u: auto_contrast(x)),
    ('Brightness', 'factor in [0.05, 0.95]', lambda x, u: adjust_brightness(x, _factor(u))),
    ('Color', 'factor in [0.05, 0.95]', lambda x, u: adjust_color(x, _factor(u))),
    ('Contrast', 'factor in [0.05, 0.95]', lambda x, u: adjust_contrast(x, _factor(u))),
    ('Equalize', None, lambda x, u: equalize(x)),
    ('Identity', None, lambda x, u: x),
    ('Posterize', 'bits in {4, ..., 8}', lambda x, u: posterize(x, 4 + tf.cast(tf.floor(u * 5), tf.int32))),
    ('Rotate', 'degrees in [-30, 30]', lambda x, u: rotate(x, _between(-30.0, 30.0)(u))),
    ('Sharpness', 'factor in [0.05, 0.95]', lambda x, u: adjust_sharpness(x, _factor(u))),
    ('ShearX', 'shear in [-0.3, 0.3]', lambda x, u: shear_x(x, _shear(u))),
    ('ShearY', 'shear in [-0.3, 0.3]', lambda x, u: shear_y(x, _shear(u))),
    ('Solarize', 'threshold in [0, 1]', lambda x, u: solarize(x, u)),
    ('TranslateX', 'in [-0.3, 0.3] x width', lambda x, u: translate(x, _shift(u) * _size(x, 1), 0.0)),
    ('TranslateY', 'in [-0.3, 0.3] x height', lambda x, u: translate(x, 0.0, _shift(u) * _size(x, 0))),
)


def draw_ops(seed, ops=2):
    """(indices int32 [ops] into RANDAUGMENT_OPS, uniform with replacement; levels float32 [ops] in [0, 1))."""
    s = _seeds(seed, 2)
    indices = tf.random.stateless_uniform([ops], s[0], 0, len(RANDAUGMENT_OPS), dtype=tf.int32)
    return indices, tf.random.stateless_uniform([ops], s[1])


def apply_op(image, index, level):
    """RANDAUGMENT_OPS[index] (int32 scalar tensor) at magnitude `level` in [0, 1)."""
    branches = [lambda op=op: op(image, level) for _, _, op in RANDAUGMENT_OPS]
    return tf.ensure_shape(tf.switch_case(index, branches), image.shape)


@_plain_python
def randaugment(image, seed, ops=2):
    """RandAugment with random magnitudes, as in FixMatch: `ops` operations applied in turn.

    Each is drawn uniformly (with replacement) from the 14 below, with a magnitude uniform in its range
    (FixMatch paper, appendix table of RandAugment transformations):
      AutoContrast (per-channel min..max -> 0..1), Brightness factor [0.05, 0.95], Color factor
      [0.05, 0.95], Contrast factor [0.05, 0.95], Equalize (256 levels), Identity, Posterize bits
      4..8, Rotate [-30, 30] degrees, Sharpness factor [0.05, 0.95], ShearX / ShearY [-0.3, 0.3],
      Solarize threshold [0, 1], TranslateX / TranslateY [-0.3, 0.3] of the width / height.
    Factors blend with a degenerate image (black, greyscale, mean grey, smoothed): 1 is the image.
    Geometric ops are bilinear about the image centre with grey (0.5) fill.
    """
    indices, levels = draw_ops(seed, ops)
    for k in range(ops):
        image = apply_op(image, indices[k], levels[k])
    return image


@_plain_python
def cutout(image, seed):
    """FixMatch's Cutout: a grey (0.5) square of side uniform in 0..min(H, W) // 2 at a uniform centre, clipped."""
    s = _seeds(seed, 2)
    limit = tf.reduce_min(tf.shape(image)[:2]) // 2
    side = tf.random.stateless_uniform([], s[0], 0, limit + 1, dtype=tf.int32)
    return grey_square(image, s[1], side)


# -- views for the data layer


@_plain_python
def strong_view(image, seed, weak):
    """FixMatch's strong view: weak(image) (the --augment function), then RandAugment (2 ops), then Cutout."""
    s = _seeds(seed, 3)
    return cutout(randaugment(weak(image, s[0]), s[1]), s[2])


VIEWS = ('weak', 'strong')


def view_function(kind, weak):
    """The augmentation (image, seed) -> image of a view `kind` in VIEWS, built on the weak augmentation `weak`."""
    if kind == 'weak':
        return weak
    if kind == 'strong':
        return _plain_python(lambda image, seed: strong_view(image, seed, weak))
    raise UserError(f'unknown view {kind!r}: choose one of ' + ', '.join(VIEWS))
