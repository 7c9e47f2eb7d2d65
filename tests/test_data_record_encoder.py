"""The hand-written PNG and Example encoders against TensorFlow's (libml/data/record_encoder.py)."""

from libml.data import record_encoder
from libml.data.records import decode_png, parse_example

import numpy as np
import tensorflow as tf


def test_encode_pngs_is_byte_for_byte_tensorflows_encoder():
    rng = np.random.default_rng(0)
    for shape in [(32, 32, 3), (16, 16, 1), (5, 3, 1), (1, 1, 3), (9, 9, 1), (96, 96, 3), (7, 13, 4)]:
        images = rng.integers(0, 256, (9,) + shape, dtype=np.uint8)
        images[3:6] //= 64  # few levels: long matches for zlib
        images[6:] = rng.integers(0, 256, (3, 1) + shape[1:], dtype=np.uint8)  # repeated rows: the up filter
        pngs = record_encoder.encode_pngs(images)
        assert pngs == [tf.io.encode_png(x).numpy() for x in images], shape
        for png, x in zip(pngs, images):
            np.testing.assert_array_equal(decode_png(png).reshape(shape), x)


def test_png_filter_rows_by_hand():
    """libpng's choice: the smallest sum of |byte as int8|, first filter on ties (none, sub, up, avg, Paeth).

    [[10, 20], [10, 20]]: row 0 sub (10, 10: 20 < none 30), row 1 up (0, 0: 0).
    [[100, 100], [50, 100]]: row 0 sub (100, 0: 100; Paeth ties at 100, sub comes first); row 1
    average (50 - (0 + 100) // 2 = 0, 100 - (50 + 100) // 2 = 25: 25 < up's 50 + 0).
    [[250, 5]]: none (250 -> 6, 5 -> 5: 11 < sub's 6 + (5 - 250) % 256 = 11 -> 17; up ties, none first).
    """

    def rows(pixels):
        return record_encoder.png_filter_rows(np.array(pixels, np.uint8)[None, :, :, None])[0].tolist()

    assert rows([[10, 20], [10, 20]]) == [[1, 10, 10], [2, 0, 0]]
    assert rows([[100, 100], [50, 100]]) == [[1, 100, 0], [3, 0, 25]]
    assert rows([[250, 5]]) == [[0, 250, 5]]


def test_example_bytes_is_the_deterministic_serialization():
    # sizes around the varint steps of the nested lengths (127/128, 16383/16384), twice each (cached heads)
    sizes = [0, 4, 115, 116, 120, 124, 125, 127, 128, 300, 16370, 16372, 16380, 16384, 1 << 21]
    cases = [(b'\x89PNG', 3), (b'abc', 1 << 40)] + [(b'x' * n, label) for n in sizes for label in (-1, 0, 300)]
    for png, label in cases * 2:
        feature = {
            'image': tf.train.Feature(bytes_list=tf.train.BytesList(value=[png])),
            'label': tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
        }
        example = tf.train.Example(features=tf.train.Features(feature=feature))
        assert record_encoder.example_bytes(png, label) == example.SerializeToString(deterministic=True)
        record = parse_example(record_encoder.example_bytes(png, label))
        assert record['image'].numpy() == png and record['label'].numpy() == label
