"""Encoded image bytes -> the model's input, as graph ops that reproduce Pillow (what a SavedModel export runs).

Preprocessing reproduces `libml.data.image_files.load_image` (Pillow) bit for bit, so an image gives the
same probabilities served as through `realmix.py --perform_inference`: JPEGs are decoded with
the accurate integer DCT (Pillow's libjpeg default; TensorFlow's default fast DCT differs by up
to 5 levels), RGB becomes grey with Pillow's integer luma (299/587/114 in 16-bit fixed point;
`tf.image.rgb_to_grayscale` is off by one level on ~1% of pixels), grey becomes RGB by
repetition, alpha is dropped, and the resize is Pillow's BILINEAR: a triangle filter widened
by the reduction factor (antialiased), 22-bit fixed-point weights, two passes rounded to uint8
in between, the vertical pass first when the height shrinks by more than twice as many pixels
as the width (Pillow >= 13; older Pillow always resizes horizontally first, which can move a
pixel by one level). Non-square images are stretched to the model's H x W, as load_image does.
Then x -> x / 255 (`tf.image.convert_image_dtype`) -> 2x - 1. Known differences: an 8-bit
palette BMP is decoded as its palette indices (TensorFlow), and a 16-bit PNG is scaled to 8 bits
where Pillow's convert('L') clips it to 255. The model computes in float32 whatever precision it
was trained with (its variables are float32). An image of more pixels than Pillow's
decompression-bomb limit, which --perform_inference applies, fails before it is decoded.
"""

from libml.data import image_files

import tensorflow as tf

_BITS = 22  # Pillow's fixed-point precision for 8-bit resampling


def decode(encoded):
    """Encoded image bytes (scalar tf.string) -> uint8 [h, w, c], c as stored (1 to 4).

    JPEG with the accurate integer DCT (as Pillow); other formats through decode_image,
    animated GIFs as their first frame.
    """
    return tf.cond(
        tf.io.is_jpeg(encoded),
        lambda: tf.io.decode_jpeg(encoded, dct_method='INTEGER_ACCURATE'),
        lambda: tf.io.decode_image(encoded, expand_animations=False),
    )


def to_channels(image, channels):
    """uint8 [h, w, c] (c in 1..4) -> uint8 [h, w, channels] as Pillow's convert('L' or 'RGB').

    Alpha is dropped; RGB -> grey is L = (19595 R + 38470 G + 7471 B + 2^15) >> 16.
    """
    count = tf.shape(image)[-1]
    if channels == 1:

        def luma():
            x = tf.cast(image[..., :3], tf.int32)
            grey = x[..., 0] * 19595 + x[..., 1] * 38470 + x[..., 2] * 7471 + (1 << 15)
            return tf.cast(tf.bitwise.right_shift(grey, 16), tf.uint8)[..., None]

        return tf.cond(count >= 3, luma, lambda: image[..., :1])
    return tf.cond(count >= 3, lambda: image[..., :3], lambda: tf.tile(image[..., :1], [1, 1, 3]))


def _coefficients(in_size, out_size):
    """Pillow's BILINEAR weights from `in_size` samples to `out_size`: int32 [out, in], rows sum to ~2^22.

    Output sample i is centred at (i + 0.5) s in input coordinates, s = in / out; the triangle
    of half-width max(s, 1) is evaluated at the input centres in its window, normalised, then
    rounded to 22-bit fixed point.
    """
    size = tf.cast(in_size, tf.float64)
    scale = size / out_size
    support = tf.maximum(scale, 1.0)
    centre = ((tf.range(out_size, dtype=tf.float64) + 0.5) * scale)[:, None]
    first = tf.maximum(tf.floor(centre - support + 0.5), 0.0)
    end = tf.minimum(tf.floor(centre + support + 0.5), size)
    x = tf.range(size)[None, :]
    weight = tf.maximum(1.0 - tf.abs((x - centre + 0.5) * (1.0 / support)), 0.0)
    weight = tf.where((x >= first) & (x < end), weight, 0.0)
    total = tf.math.cumsum(weight, axis=1)[:, -1:]  # left to right, as Pillow adds them
    return tf.cast(tf.floor(tf.math.divide_no_nan(weight, total) * (1 << _BITS) + 0.5), tf.int32)


def _resample(image, size, axis):
    """One pass of Pillow's resize along `axis` (0 rows, 1 columns): int32 [h, w, c] in 0..255."""
    weights = _coefficients(tf.shape(image)[axis], size)
    y = tf.einsum('oh,hwc->owc' if axis == 0 else 'ow,hwc->hoc', weights, image)
    return tf.clip_by_value(tf.bitwise.right_shift(y + (1 << (_BITS - 1)), _BITS), 0, 255)


def pil_resize(image, height, width):
    """uint8 [h, w, c] -> uint8 [height, width, c], equal to Pillow's resize((width, height), BILINEAR)."""
    x = tf.cast(image, tf.int32)
    h, w = tf.shape(x)[0], tf.shape(x)[1]
    vertical_first = (height < h) & (h - height > 2 * (w - width))
    y = tf.cond(
        vertical_first,
        lambda: _resample(_resample(x, height, 0), width, 1),
        lambda: _resample(_resample(x, width, 1), height, 0),
    )
    return tf.cast(y, tf.uint8)


def _number(head, start, count, big_endian=False):
    """int64: the unsigned integer in bytes start..start+count-1 of `head` (int64 [64])."""
    weights = [256**i for i in range(count)]
    return tf.reduce_sum(head[start : start + count] * (weights[::-1] if big_endian else weights))


def _header_size(encoded):
    """int64 [2] (height, width) read from the header of PNG, GIF, BMP or WebP bytes; [0, 0] for others."""
    padded = tf.strings.substr(encoded + b'\0' * 64, 0, 64)  # short or empty bytes read as zeros
    head = tf.cast(tf.io.decode_raw(padded, tf.uint8), tf.int64)

    def signed(value):  # a BMP's int32 (its height is negative for top-down rows)
        return tf.abs(tf.where(value >= 2**31, value - 2**32, value))

    def starts(text, at=0):
        return tf.strings.substr(padded, at, len(text)) == text

    vp8l = _number(head, 21, 4)
    candidates = [
        (starts(b'\x89PNG'), _number(head, 20, 4, True), _number(head, 16, 4, True)),
        (starts(b'GIF8'), _number(head, 8, 2), _number(head, 6, 2)),
        (starts(b'BM'), signed(_number(head, 22, 4)), signed(_number(head, 18, 4))),
        (starts(b'VP8 ', 12), _number(head, 28, 2) % 16384, _number(head, 26, 2) % 16384),
        (starts(b'VP8L', 12), (vp8l // 16384) % 16384 + 1, vp8l % 16384 + 1),
        (starts(b'VP8X', 12), _number(head, 27, 3) + 1, _number(head, 24, 3) + 1),
    ]
    found = tf.stack([tf.where(kind, tf.stack([h, w]), tf.zeros([2], tf.int64)) for kind, h, w in candidates])
    return tf.reduce_max(found, axis=0)


def encoded_size(encoded):
    """int64 [2] (height, width) of encoded image bytes, from their header, before any decoding."""
    return tf.cond(
        tf.io.is_jpeg(encoded),
        lambda: tf.cast(tf.io.extract_jpeg_shape(encoded)[:2], tf.int64),
        lambda: _header_size(encoded),
    )


def check_size(encoded, limit):
    """An assertion op: the image of `encoded` bytes has at most `limit` pixels (Pillow's decompression-bomb rule)."""
    size = encoded_size(encoded)
    message = f'an image larger than {limit} pixels (a decompression bomb?), height x width:'
    return tf.debugging.Assert(size[0] * size[1] <= limit, [message, size[0], size[1]])


def preprocess(encoded, shape, limit=None):
    """Encoded image bytes -> float32 [H, W, C] in [0, 1] for a model of input `shape` (H, W, C).

    An image of more than `limit` pixels (default `image_files.pixel_limit()`, what --perform_inference
    refuses) fails before it is decoded.
    """
    height, width, channels = shape
    with tf.control_dependencies([check_size(encoded, limit or image_files.pixel_limit())]):
        image = pil_resize(to_channels(decode(encoded), channels), height, width)
    return tf.ensure_shape(tf.image.convert_image_dtype(image, tf.float32), shape)
