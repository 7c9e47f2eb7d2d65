"""Augmentations: RandAugment's ops against numpy references, Cutout, the strong view, determinism."""

import hashlib
import math

from libml.data import augment
from libml.errors import UserError

import numpy as np
import pytest
import tensorflow as tf

GREY = 0.5
LUMA = np.array([0.299, 0.587, 0.114])
OP_NAMES = [name for name, _, _ in augment.RANDAUGMENT_OPS]


def seed(k, base=7):
    return tf.constant([base, k], tf.int64)


def level_image(shape, rng_seed=0):
    """float32 image of exact 8-bit levels k / 255 (never exactly 0.5, which is 127.5 / 255)."""
    levels = np.random.default_rng(rng_seed).integers(0, 256, size=shape)
    return (levels / 255.0).astype(np.float32)


def digest(array):
    return hashlib.sha256(np.asarray(array).tobytes()).hexdigest()[:16]


# -- numpy references, written independently of libml.data.augment


def np_project(image, inverse):
    """Bilinear resampling: output pixel (col x, row y) reads the input at inverse(x, y); outside pixels are grey."""
    height, width, _ = image.shape

    def pixel(r, c):
        return image[r, c] if 0 <= r < height and 0 <= c < width else np.full(image.shape[2], GREY)

    out = np.zeros(image.shape)
    for r in range(height):
        for c in range(width):
            xi, yi = inverse(c, r)
            x0, y0 = math.floor(xi), math.floor(yi)
            fx, fy = xi - x0, yi - y0
            out[r, c] = (1 - fy) * ((1 - fx) * pixel(y0, x0) + fx * pixel(y0, x0 + 1)) + fy * (
                (1 - fx) * pixel(y0 + 1, x0) + fx * pixel(y0 + 1, x0 + 1)
            )
    return out


def np_rotate(image, degrees):
    """Counter-clockwise as displayed: the output point at angle a about the centre comes from angle a - degrees."""
    height, width, _ = image.shape
    cx, cy = (width - 1) / 2, (height - 1) / 2
    t = math.radians(degrees)
    # Row axis points down, so a visual counter-clockwise turn of (x, y - up) is, in (col, row) coordinates,
    # input = R(t) applied to the output offset with R = [[cos, -sin], [sin, cos]].
    return np_project(
        image,
        lambda x, y: (
            cx + math.cos(t) * (x - cx) - math.sin(t) * (y - cy),
            cy + math.sin(t) * (x - cx) + math.cos(t) * (y - cy),
        ),
    )


def np_shear_x(image, s):
    cy = (image.shape[0] - 1) / 2
    return np_project(image, lambda x, y: (x - s * (y - cy), y))


def np_shear_y(image, s):
    cx = (image.shape[1] - 1) / 2
    return np_project(image, lambda x, y: (x, y - s * (x - cx)))


def np_translate(image, dx, dy):
    return np_project(image, lambda x, y: (x - dx, y - dy))


def np_luma(image):
    return image if image.shape[2] == 1 else (image @ LUMA)[..., None]


def np_blend(degenerate, image, factor):
    return np.clip(degenerate + factor * (image - degenerate), 0, 1)


def np_smooth(image):
    """3x3 [[1,1,1],[1,5,1],[1,1,1]]/13 on inner pixels; border pixels unchanged."""
    kernel = np.array([[1, 1, 1], [1, 5, 1], [1, 1, 1]]) / 13
    out = image.astype(np.float64).copy()
    for r in range(1, image.shape[0] - 1):
        for c in range(1, image.shape[1] - 1):
            for ch in range(image.shape[2]):
                out[r, c, ch] = (kernel * image[r - 1 : r + 2, c - 1 : c + 2, ch]).sum()
    return out


def np_equalize(image):
    """Textbook histogram equalisation per channel: v -> round(255 (cdf(v) - cdf(min)) / (N - cdf(min)))."""
    levels = np.floor(image.astype(np.float64) * 255 + 0.5).astype(int)
    out = np.empty(image.shape)
    for ch in range(image.shape[2]):
        q = levels[..., ch]
        n, first = q.size, np.sum(q == q.min())
        for v in np.unique(q):
            new = v if n == first else math.floor(255 * (np.sum(q <= v) - first) / (n - first) + 0.5)
            out[..., ch][q == v] = new / 255
    return out


def np_auto_contrast(image):
    out = image.astype(np.float64).copy()
    for ch in range(image.shape[2]):
        lo, hi = image[..., ch].min(), image[..., ch].max()
        if hi > lo:
            out[..., ch] = (image[..., ch] - lo) / (hi - lo)
    return out


def np_posterize(image, bits):
    levels = np.floor(image.astype(np.float64) * 255 + 0.5).astype(np.uint8)
    mask = (0xFF << (8 - bits)) & 0xFF
    return (levels & np.uint8(mask)) / 255


def np_op(name, image, u):
    """The RandAugment op `name` at level u in [0, 1), ranges from the FixMatch paper's table."""
    x = image.astype(np.float64)
    factor = 0.05 + 0.9 * u
    height, width, channels = image.shape
    return {
        'AutoContrast': lambda: np_auto_contrast(image),
        'Brightness': lambda: np_blend(0, x, factor),
        'Color': lambda: x if channels == 1 else np_blend(np_luma(x), x, factor),
        'Contrast': lambda: np_blend(np_luma(x).mean(), x, factor),
        'Equalize': lambda: np_equalize(image),
        'Identity': lambda: x,
        'Posterize': lambda: np_posterize(image, 4 + int(5 * u)),
        'Rotate': lambda: np_rotate(x, -30 + 60 * u),
        'Sharpness': lambda: np_blend(np_smooth(x), x, factor),
        'ShearX': lambda: np_shear_x(x, -0.3 + 0.6 * u),
        'ShearY': lambda: np_shear_y(x, -0.3 + 0.6 * u),
        'Solarize': lambda: np.where(x >= u, 1 - x, x),
        'TranslateX': lambda: np_translate(x, (-0.3 + 0.6 * u) * width, 0),
        'TranslateY': lambda: np_translate(x, 0, (-0.3 + 0.6 * u) * height),
    }[name]()


# -- existing augmentations


def test_existing_augmentations_unchanged():
    # Digests of each output for seed (5, 11), computed before RandAugment was added.
    expected = {
        ('none', (32, 32, 3)): 'a5c35d57cd19d7a2',
        ('none', (20, 28, 1)): '18025bf2f6fca244',
        ('cifar10', (32, 32, 3)): '582cf52763cb97a1',
        ('cifar10', (20, 28, 1)): '34a51937f6779715',
        ('svhn', (32, 32, 3)): '11c74d86351750c6',
        ('svhn', (20, 28, 1)): 'c95770dc49fb4500',
        ('stl10', (32, 32, 3)): '10043b5f7e87456d',
        ('stl10', (20, 28, 1)): '0f068f2170eb77fa',
        ('color', (32, 32, 3)): '6b95a81ce131b651',
        ('color', (20, 28, 1)): '3e30cf0d87b33075',
        ('cutout', (32, 32, 3)): '0b15be0e545833ae',
        ('cutout', (20, 28, 1)): '60dc648de1b28c96',
    }

    def image(shape):
        x = np.arange(np.prod(shape), dtype=np.float64).reshape(shape)
        return tf.constant(((x * 37) % 256 / 255.0).astype(np.float32))

    s = tf.constant([5, 11], tf.int64)
    got = {(name, shape): digest(augment.get(name)(image(shape), s).numpy()) for name, shape in expected}
    assert got == expected
    square = tf.function(lambda x, s: augment.grey_square(x, s, 7))  # was `erase`
    assert digest(square(image((32, 32, 3)), s).numpy()) == '3068a9b1d6621ea2'
    assert augment.get('stl-10') is augment.stl10


def test_augment_names():
    assert augment.get('cutout') is augment.cifar10_grey_square
    with pytest.raises(UserError, match='unknown augmentation .*cutout'):
        augment.get('randaugment')


# -- RandAugment's ops, one by one, on hand-made images


def test_posterize_4_bits_known_levels():
    levels = np.array([0, 15, 16, 17, 127, 128, 200, 255], np.float32)
    out = augment.posterize(tf.constant(levels.reshape(2, 4, 1) / 255), 4).numpy().ravel() * 255
    # Keep the top 4 bits: floor(v / 16) * 16.
    np.testing.assert_allclose(out, [0, 0, 16, 16, 112, 128, 192, 240], atol=1e-4)


def test_solarize_inverts_at_and_above_threshold():
    x = tf.constant([[[0.2], [0.5], [0.7], [1.0]]])
    np.testing.assert_allclose(augment.solarize(x, 0.5).numpy().ravel(), [0.2, 0.5, 0.3, 0.0], atol=1e-7)


def test_auto_contrast_stretches_each_channel():
    x = np.zeros((2, 2, 3), np.float32)
    x[..., 0] = [[0.2, 0.3], [0.4, 0.6]]  # stretched: (x - 0.2) / 0.4
    x[..., 1] = 0.7  # constant: kept
    x[..., 2] = [[0.0, 1.0], [0.5, 0.25]]  # already full range
    out = augment.auto_contrast(tf.constant(x)).numpy()
    np.testing.assert_allclose(out[..., 0], [[0, 0.25], [0.5, 1]], atol=1e-6)
    np.testing.assert_allclose(out[..., 1], 0.7, atol=1e-7)
    np.testing.assert_allclose(out[..., 2], x[..., 2], atol=1e-7)


def test_equalize_tiny_image_by_hand():
    # Levels 0, 0, 100, 200: N = 4, cdf = 2, 3, 4 and cdf(min) = 2, so 0 -> 0,
    # 100 -> round(255 * 1 / 2) = 128, 200 -> 255.
    x = tf.constant(np.array([0, 0, 100, 200], np.float32).reshape(2, 2, 1) / 255)
    np.testing.assert_allclose(augment.equalize(x).numpy().ravel() * 255, [0, 0, 128, 255], atol=1e-4)
    flat = tf.fill([3, 3, 1], 0.4)
    np.testing.assert_allclose(augment.equalize(flat).numpy(), np.round(0.4 * 255) / 255, atol=1e-7)


@pytest.mark.parametrize('channels', [1, 3])
def test_equalize_matches_numpy(channels):
    # Few distinct levels, so the histogram has ties and gaps.
    x = np.random.default_rng(3).choice([3, 40, 41, 90, 200, 201, 250], size=(7, 5, channels)) / 255
    x = x.astype(np.float32)
    np.testing.assert_allclose(augment.equalize(tf.constant(x)).numpy(), np_equalize(x), atol=1e-6)


def test_translate_known_pixels_with_grey_fill():
    x = level_image((5, 6, 2), 1)
    out = augment.translate(tf.constant(x), 2.0, -1.0).numpy()
    expected = np.full(x.shape, GREY, np.float32)
    expected[0:4, 2:6] = x[1:5, 0:4]  # content 2 pixels right, 1 up
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_rotate_90_is_rot90_and_shear_moves_rows():
    x = level_image((5, 5, 3), 2)
    np.testing.assert_allclose(augment.rotate(tf.constant(x), 90.0).numpy(), np.rot90(x), atol=1e-5)
    # Shear 1 about the centre row 2: row r moves right by r - 2 pixels.
    out = augment.shear_x(tf.constant(x), 1.0).numpy()
    for r in range(5):
        expected = np.full((5, 3), GREY, np.float32)
        d = r - 2
        expected[max(d, 0) : 5 + min(d, 0)] = x[r, max(-d, 0) : 5 - max(d, 0)]
        np.testing.assert_allclose(out[r], expected, atol=1e-6)


def test_blend_ops_and_identity_against_numpy():
    x = level_image((6, 7, 3), 4)
    t = tf.constant(x)
    np.testing.assert_allclose(augment.adjust_brightness(t, 0.3).numpy(), 0.3 * x, atol=1e-6)
    np.testing.assert_allclose(augment.adjust_color(t, 0.3).numpy(), np_blend(np_luma(x), x, 0.3), atol=1e-6)
    np.testing.assert_allclose(augment.adjust_contrast(t, 0.3).numpy(), np_blend(np_luma(x).mean(), x, 0.3), atol=1e-6)
    np.testing.assert_allclose(augment.adjust_sharpness(t, 0.3).numpy(), np_blend(np_smooth(x), x, 0.3), atol=1e-6)
    grey = level_image((6, 7, 1), 5)
    np.testing.assert_array_equal(augment.adjust_color(tf.constant(grey), 0.05).numpy(), grey)
    identity = OP_NAMES.index('Identity')
    np.testing.assert_array_equal(augment.apply_op(t, tf.constant(identity), tf.constant(0.7)).numpy(), x)


@pytest.mark.parametrize('shape', [(6, 7, 3), (7, 5, 1)])
def test_randaugment_applies_the_drawn_op_at_its_published_range(shape):
    """randaugment with one op == the numpy reference of the op and level it drew, for every op."""
    x = level_image(shape, 6)
    seen = set()
    for k in range(120):
        (index,), (u,) = (v.numpy() for v in augment.draw_ops(seed(k), 1))
        name = OP_NAMES[index]
        if name in seen and len(seen) < len(OP_NAMES):
            continue
        seen.add(name)
        out = augment.randaugment(tf.constant(x), seed(k), ops=1).numpy()
        np.testing.assert_allclose(out, np_op(name, x, float(u)), atol=2e-5, err_msg=f'{name} at level {u}')
    assert seen == set(OP_NAMES)


def test_op_choice_covers_all_ops_uniformly():
    n = 4200  # 8400 draws of 2 ops: 600 expected per op, standard deviation ~24
    ds = tf.data.Dataset.range(n).map(lambda i: augment.draw_ops(tf.stack([tf.constant(9, tf.int64), i]), 2))
    indices, levels = next(iter(ds.batch(n)))
    counts = np.bincount(indices.numpy().ravel(), minlength=14)
    assert len(counts) == 14
    assert np.all(np.abs(counts - 600) < 120), counts
    assert 0.48 < levels.numpy().mean() < 0.52 and levels.numpy().min() >= 0 and levels.numpy().max() < 1
    # The two ops of one draw are independent: both equal about 1 / 14 of the time.
    same = np.mean(indices.numpy()[:, 0] == indices.numpy()[:, 1])
    assert abs(same - 1 / 14) < 0.02


@pytest.mark.parametrize('shape', [(32, 32, 3), (20, 28, 1), (24, 16, 3)])
def test_every_op_keeps_shape_dtype_range(shape):
    x = tf.constant(level_image(shape, 7))
    for index, name in enumerate(OP_NAMES):
        for u in (0.0, 0.5, 0.999):
            out = augment.apply_op(x, tf.constant(index), tf.constant(u))
            assert out.shape == shape and out.dtype == tf.float32, name
            assert out.numpy().min() >= 0 and out.numpy().max() <= 1, (name, u)


# -- Cutout, strong view, determinism


@pytest.mark.parametrize('shape', [(16, 16, 3), (12, 18, 1)])
def test_cutout_is_one_grey_square_up_to_half_the_side(shape):
    x = tf.constant(level_image(shape, 8))  # no pixel is exactly 0.5
    limit = min(shape[:2]) // 2
    sides = []
    cutout = tf.function(augment.cutout)
    for k in range(150):
        out = cutout(x, seed(k)).numpy()
        grey = out == GREY
        np.testing.assert_array_equal(out[~grey], x.numpy()[~grey])
        assert np.all(grey == grey[..., :1])  # all channels together
        rows, cols = np.nonzero(grey[..., 0])
        if rows.size:
            height, width = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
            assert rows.size == height * width  # one filled rectangle (a square clipped by the borders)
            assert height <= limit and width <= limit
            sides.append(max(height, width))
        assert rows.size <= (shape[0] / 2) ** 2
    assert max(sides) == limit and min(sides) <= 2  # sides spread over 0..limit


@pytest.mark.parametrize('shape', [(32, 32, 3), (20, 28, 1)])
def test_strong_view_seeded_and_in_range(shape):
    x = tf.constant(level_image(shape, 9))
    strong = augment.view_function('strong', augment.get('cifar10'))
    first = strong(x, seed(1)).numpy()
    assert first.shape == shape and first.dtype == np.float32
    assert first.min() >= 0 and first.max() <= 1
    np.testing.assert_array_equal(strong(x, seed(1)).numpy(), first)
    np.testing.assert_array_equal(augment.strong_view(x, seed(1), augment.cifar10).numpy(), first)
    outputs = [strong(x, seed(k)).numpy() for k in range(2, 8)]
    assert len({digest(o) for o in outputs + [first]}) == 7
    for fn in (augment.randaugment, augment.cutout):
        np.testing.assert_array_equal(fn(x, seed(3)).numpy(), fn(x, seed(3)).numpy())


def test_view_function():
    assert augment.VIEWS == ('weak', 'strong')
    assert augment.view_function('weak', augment.svhn) is augment.svhn
    with pytest.raises(UserError, match="unknown view 'medium'"):
        augment.view_function('medium', augment.svhn)


def test_strong_view_in_parallel_dataset_map_is_deterministic():
    images = tf.constant(np.stack([level_image((32, 32, 3), k) for k in range(8)]))
    strong = augment.view_function('strong', augment.cifar10)

    ds = tf.data.Dataset.range(48).map(
        lambda i: strong(images[i % 8], tf.stack([tf.constant(5, tf.int64), i])),
        num_parallel_calls=4,
        deterministic=False,
    )
    first, second = list(ds.as_numpy_iterator()), list(ds.as_numpy_iterator())
    # Order may vary with deterministic=False; each element is a function of its index only, so compare as sets.
    assert sorted(map(digest, first)) == sorted(map(digest, second))
    eager = [strong(images[i % 8], tf.constant([5, i], tf.int64)).numpy() for i in (0, 13, 47)]
    assert {digest(e) for e in eager} <= set(map(digest, first))
