"""The export's image-size limit (issue 22): the serving graph refuses what inference refuses as a decompression
bomb."""

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
