"""The export's graph preprocessing against Pillow (libml/serve/preprocess.py)."""

import io
import struct
import warnings
import zlib

from libml import models
from libml.data import image_files
from libml.serve import export, preprocess

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image


@pytest.mark.parametrize('seed', range(4))
def test_resize_is_pillows_bilinear(seed):
    """Every combination of shrinking and stretching (both pass orders), grey and RGB, bit for bit."""
    rng = np.random.default_rng(seed)
    for _ in range(12):
        h, w, oh, ow = (int(v) for v in rng.integers(1, 70, 4))
        channels = int(rng.choice([1, 3]))
        pixels = rng.integers(0, 256, (h, w, channels), dtype=np.uint8)
        pil = Image.fromarray(pixels[:, :, 0] if channels == 1 else pixels).resize((ow, oh), Image.BILINEAR)
        expected = np.asarray(pil).reshape(oh, ow, channels)
        np.testing.assert_array_equal(
            preprocess.pil_resize(pixels, oh, ow).numpy(), expected, err_msg=f'{h}x{w}->{oh}x{ow}'
        )


@pytest.mark.filterwarnings('ignore:Palette images with Transparency')
@pytest.mark.parametrize('mode', ['L', 'LA', 'RGB', 'RGBA', 'P'])
@pytest.mark.parametrize('fmt', ['PNG', 'JPEG', 'BMP', 'GIF', 'WEBP'])
def test_decoding_and_channels_are_pillows(mode, fmt):
    """Decoded pixels converted to grey and to RGB equal Pillow's convert('L') / convert('RGB') of the file."""
    if (fmt, mode) == ('BMP', 'P'):
        pytest.xfail('known limit: TensorFlow decodes an 8-bit palette BMP as its palette indices')
    rng = np.random.default_rng(1)
    picture = Image.fromarray(np.clip(rng.normal(128, 50, (9, 14, 4)), 0, 255).astype(np.uint8), 'RGBA').convert(mode)
    buf = io.BytesIO()
    try:
        picture.save(buf, format=fmt, **({'lossless': True} if fmt == 'WEBP' else {}))
    except (OSError, ValueError, KeyError):
        pytest.skip(f'Pillow cannot write {mode} images as {fmt}')
    data = buf.getvalue()
    for target, channels in (('L', 1), ('RGB', 3)):
        expected = np.asarray(Image.open(io.BytesIO(data)).convert(target)).reshape(9, 14, channels)
        got = preprocess.to_channels(preprocess.decode(tf.constant(data)), channels).numpy()
        np.testing.assert_array_equal(got, expected, err_msg=f'{fmt} {mode} -> {target}')


def png_chunk(kind, payload):
    return struct.pack('>I', len(payload)) + kind + payload + struct.pack('>I', zlib.crc32(kind + payload))


def png_header(width, height):
    """A grey PNG of width x height with no pixel data: Pillow opens it, a size check reads its header."""
    ihdr = png_chunk(b'IHDR', struct.pack('>IIBBBBB', width, height, 8, 0, 0, 0, 0))
    return b'\x89PNG\r\n\x1a\n' + ihdr + png_chunk(b'IDAT', zlib.compress(b'')) + png_chunk(b'IEND', b'')


@pytest.mark.parametrize(
    'fmt, mode, options',
    [
        ('PNG', 'RGB', {}),
        ('GIF', 'RGB', {}),
        ('BMP', 'RGB', {}),
        ('JPEG', 'RGB', {}),
        ('WEBP', 'RGB', {}),
        ('WEBP', 'RGB', {'lossless': 1}),
        ('WEBP', 'RGBA', {}),
    ],
)
def test_the_serving_graph_reads_image_sizes_as_pillow_does(fmt, mode, options):
    rng = np.random.default_rng(0)
    for width, height in [(37, 23), (5, 300), (300, 7)]:
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (height, width, len(mode)), np.uint8), mode).save(buffer, fmt, **options)
        opened = Image.open(io.BytesIO(buffer.getvalue()))
        assert preprocess.encoded_size(tf.constant(buffer.getvalue())).numpy().tolist() == [opened.height, opened.width]


def test_the_serving_graph_refuses_what_pillow_refuses_as_a_decompression_bomb():
    limit = image_files.pixel_limit()
    for width, height in [(2, limit // 2), (1, limit + 1), (20000, 20000)]:  # at the limit, one above, issue 22's
        header = png_header(width, height)
        try:
            with warnings.catch_warnings():  # Pillow warns from half the limit on
                warnings.simplefilter('ignore', Image.DecompressionBombWarning)
                Image.open(io.BytesIO(header))
            pillow_refuses = False
        except Image.DecompressionBombError:
            pillow_refuses = True
        try:
            preprocess.check_size(tf.constant(header), limit)
            graph_refuses = False
        except tf.errors.InvalidArgumentError as e:
            graph_refuses = 'decompression bomb' in e.message
        assert graph_refuses == pillow_refuses == (width * height > limit)
    model = models.create_model('convnet', 3, (8, 8, 1), filters=4, repeat=1, scales=1)
    _, signatures = export.serving_module(model, (8, 8, 1), ['a', 'b', 'c'])
    with pytest.raises(tf.errors.InvalidArgumentError, match='decompression bomb'):
        signatures[export.SERVING](images=tf.constant([png_header(20000, 20000)]))
