"""Dataset record files: writing, reading and scanning them, decoding their images, naming their defects.

Every dataset file is a TFRecord of `tf.train.Example`s with an `image` feature (PNG bytes,
uint8, 1 or 3 channels) and a `label` feature (int64, -1 = no label).
"""

import contextlib
import io
import os
import re

from libml import progress
from libml.errors import UserError, first_line
from libml.files import atomic_output, check_utf8

import numpy as np
import PIL
import tensorflow as tf
from google.protobuf.message import DecodeError
from PIL import Image

REBUILD = 'rebuild it with scripts/create_datasets.py (or the command that wrote it)'
FEATURES = 'every record needs an "image" (PNG bytes) and an int64 "label" (-1 = unlabelled) feature'


# --------------------------------------------------------------------------- one record


def encode_png(image):
    """uint8 array [H, W] or [H, W, C] (C in 1, 3) -> PNG bytes."""
    image = np.asarray(image, np.uint8)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format='PNG')
    return buf.getvalue()


def decode_png(data):
    """PNG bytes -> uint8 array [H, W, C]."""
    image = np.asarray(Image.open(io.BytesIO(data)))
    return image[:, :, None] if image.ndim == 2 else image


def serialize_example(png_bytes, label):
    """One record: PNG bytes and an integer label (-1 = unlabelled)."""
    feature = {
        'image': tf.train.Feature(bytes_list=tf.train.BytesList(value=[png_bytes])),
        'label': tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)])),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def parse_example(serialized):
    """Parses one serialized record -> dict(image=PNG bytes, label=int64), graph-friendly."""
    return tf.io.parse_single_example(
        serialized,
        {
            'image': tf.io.FixedLenFeature([], tf.string),
            'label': tf.io.FixedLenFeature([], tf.int64),
        },
    )


def _example_fields(raw, path, index):
    """(png_bytes, label) of one serialized record; UserError naming the record when malformed."""
    try:
        feature = tf.train.Example.FromString(raw).features.feature
    except DecodeError as e:
        raise UserError(f'{path}: record {index} is not a tf.train.Example ({e}): {REBUILD}') from None
    images, labels = feature['image'].bytes_list.value, feature['label'].int64_list.value
    for name, values in (('image', images), ('label', labels)):
        if len(values) != 1:
            raise UserError(f'{path}: record {index} has no single "{name}" value: {FEATURES}; {REBUILD}')
    return images[0], labels[0]


# --------------------------------------------------------------------------- errors


def file_error(path, error):
    """One-line message for a TensorFlow error met while reading the record file `path`."""
    text = first_line(error)
    match = re.search(r'(truncated|corrupted) record at (\d+)', text)
    if match and match[1] == 'truncated':
        return (
            f'{path} is truncated (its record at byte {match[2]} is cut short: was the command that wrote it '
            f'interrupted?): {REBUILD}'
        )
    if match:
        return f'{path} is corrupted (bad checksum in the record at byte {match[2]}): {REBUILD}'
    if re.search(r'parse|Data types|Feature|Key:', text):
        return f'{path} does not hold dataset records ({text}): {FEATURES}; {REBUILD}'
    return f'{path} is not a readable dataset file ({text})'


def check_record_file(path, what='dataset file'):
    """UserError naming `path` if it is missing or its name is not UTF-8 (TensorFlow cannot open it)."""
    check_utf8(path, what)
    if not os.path.isfile(path):
        raise UserError(
            f'{what} not found: {path} (create it with scripts/create_datasets.py '
            'and scripts/create_split.py, and check $ML_DATA)'
        )


_DECODE_FAILURES = re.compile(r'image file format|Invalid PNG|Invalid JPEG|DecodePng|decode', re.IGNORECASE)


@contextlib.contextmanager
def pipeline_errors(paths):
    """Turns a TensorFlow error about a record of `paths` into a UserError (see `DataSet.pipeline_errors`)."""
    try:
        yield
    except (tf.errors.InvalidArgumentError, tf.errors.DataLossError) as e:
        text = first_line(e)
        asserted = re.search(r'assertion failed: \[(.*)\]', text)
        if asserted and any(asserted[1].startswith(p) for p in paths):
            raise UserError(asserted[1]) from None
        if isinstance(e, tf.errors.DataLossError) or _DECODE_FAILURES.search(text):
            files = ' or '.join(paths)
            raise UserError(f'a record of {files} cannot be read ({text}): {REBUILD}') from None
        raise


# --------------------------------------------------------------------------- whole files


def read_records(path):
    """Yields (png_bytes, label) for every record of `path`, in file order."""
    check_record_file(path)
    index = 0
    try:
        for raw in tf.data.TFRecordDataset(path).as_numpy_iterator():
            yield _example_fields(raw, path, index)
            index += 1
    except tf.errors.OpError as e:
        raise UserError(file_error(path, e)) from None


def count_records(path):
    """Number of records in a TFRecord file."""
    check_record_file(path)
    try:
        return int(tf.data.TFRecordDataset(path).reduce(np.int64(0), lambda n, _: n + 1))
    except tf.errors.OpError as e:
        raise UserError(file_error(path, e)) from None


def write_records(path, records, total=None, overwrite=False, desc=None):
    """Writes (png_bytes, label) pairs to `path` atomically, with a progress bar.

    Returns the number of records written.
    """
    count = 0
    with atomic_output(path, overwrite) as tmp, tf.io.TFRecordWriter(tmp) as writer:
        for png, label in progress.bar(
            records, total=total, desc=desc or os.path.basename(path), unit='img', leave=False
        ):
            writer.write(serialize_example(png, label))
            count += 1
    return count


def first_image_shape(path):
    """(H, W, C) of the first image of a record file; UserError when the file is empty or it is no image."""
    for png, _ in read_records(path):
        try:
            return decode_png(png).shape
        except (PIL.UnidentifiedImageError, OSError, ValueError) as e:
            raise UserError(f'{path}: the "image" of record 0 is not a PNG image ({e}): {REBUILD}') from None
    raise UserError(f'{path} is empty')


# --------------------------------------------------------------------------- scans


class RecordScan:
    """What one pass over a record file learns: every record's label and byte offset.

    `labels` int64 [N]; `offsets` int64 [N + 1]: record r spans bytes offsets[r]..offsets[r+1]
    (its serialized Example starts 12 bytes in and ends 4 bytes before the end); `size` bytes.
    """

    def __init__(self, path, labels, offsets):
        self.path, self.labels, self.offsets = path, labels, offsets
        self.size = int(offsets[-1])

    def __len__(self):
        return len(self.labels)


_NO_LABEL = np.iinfo(np.int64).min


def _scan_summaries(path):
    """(labels int64 [N] (_NO_LABEL where absent), has_image bool [N], serialized lengths [N]) of `path`."""
    spec = {
        'image': tf.io.FixedLenFeature([], tf.string, default_value=''),
        'label': tf.io.FixedLenFeature([], tf.int64, default_value=_NO_LABEL),
    }

    def summary(raw):
        parsed = tf.io.parse_example(raw, spec)
        return parsed['label'], tf.strings.length(parsed['image']) > 0, tf.strings.length(raw)

    ds = tf.data.TFRecordDataset(path, buffer_size=1 << 20).batch(4096)
    parts = ds.map(summary, num_parallel_calls=tf.data.AUTOTUNE)
    try:
        parts = list(parts.as_numpy_iterator())
    except tf.errors.OpError as e:
        raise UserError(file_error(path, e)) from None
    labels, has_image, lengths = (np.concatenate([p[k] for p in parts]) if parts else np.zeros([0]) for k in range(3))
    return labels.astype(np.int64), has_image, lengths


def scan_records(path):
    """A `RecordScan` of `path`; UserError naming the file (and record) on any defect."""
    check_record_file(path)
    labels, has_image, lengths = _scan_summaries(path)
    for name, bad in (('label', labels == _NO_LABEL), ('image', ~has_image.astype(bool))):
        if bad.any():
            raise UserError(f'{path}: record {int(np.argmax(bad))} has no "{name}" feature: {FEATURES}; {REBUILD}')
    offsets = np.concatenate([[0], np.cumsum(lengths.astype(np.int64) + 16)])
    size = os.path.getsize(path)
    if offsets[-1] != size:
        raise UserError(f'{path} has {size - offsets[-1]} stray bytes after its last record: {REBUILD}')
    return RecordScan(path, labels, offsets)


def read_labels(path):
    """int64 array of every record's label, in file order."""
    return scan_records(path).labels


# --------------------------------------------------------------------------- images in graphs


# First bytes of the formats tf.io.decode_png reads: PNG, JPEG, GIF, BMP, WebP (RIFF).
_SIGNATURES = (b'\x89PNG', b'\xff\xd8\xff', b'GIF8', b'BM', b'RIFF')
_PLACEHOLDER = encode_png(np.zeros([1, 1], np.uint8))  # decoded in place of bytes that are no image


def _is_image(png):
    """bool tensor of the shape of the string tensor `png`: the bytes start like an image tf.io.decode_png reads."""
    head = tf.strings.substr(png, 0, 4)
    return tf.reduce_any(tf.stack([tf.strings.substr(head, 0, len(s)) == s for s in _SIGNATURES]), axis=0)


def no_image_message(path):
    """The error of a record of `path` that holds no image."""
    return f'{path}: a record holds no PNG image: {REBUILD}'


def size_message(path, shape, actual):
    """The error of a record of `path` holding an image of size `actual` ('HxW', str or string tensor), not `shape`."""
    parts = [
        f'{path}: a record holds a ',
        actual,
        f' image where its first image is {shape[0]}x{shape[1]} (every image of a dataset must have one size): '
        're-create the file with scripts/create_datasets.py --img_size',
    ]
    return ''.join(parts) if isinstance(actual, str) else tf.strings.join(parts)


def decode_fitted(png, shape, otherwise=None):
    """(uint8 [H, W, C] of `shape`, int32 [2] the decoded image's height and width) of PNG bytes, in a graph.

    An image of another size gives `otherwise(size)` (default: zeros of `shape`), built only then.
    """
    image = tf.io.decode_png(png, channels=shape[2])
    size = tf.shape(image)[:2]
    other = (lambda: otherwise(size)) if otherwise else (lambda: tf.zeros(shape, tf.uint8))
    return tf.cond(tf.reduce_all(size == shape[:2]), lambda: tf.reshape(image, shape), other), size


def checked_decode(png, shape, path):
    """PNG bytes -> uint8 [H, W, C] of `shape`, in a graph.

    Records that hold no image or an image of another size fail with an InvalidArgumentError
    whose message starts with `path` (see `DataSet.pipeline_errors`); the message of the second
    is built only then.
    """

    def fail(size):
        actual = tf.strings.reduce_join(tf.strings.as_string(size), separator='x')
        with tf.control_dependencies([tf.debugging.Assert(False, [size_message(path, shape, actual)])]):
            return tf.zeros(shape, tf.uint8)

    with tf.control_dependencies([tf.debugging.Assert(_is_image(png), [no_image_message(path)])]):
        return decode_fitted(png, shape, fail)[0]


def record_decoder(path, shape):
    """serialized record of `path` -> (uint8 image [H, W, C] checked against `shape`, int64 label), in a graph."""

    def decode(raw):
        record = parse_example(raw)
        return checked_decode(record['image'], shape, path), record['label']

    return decode


def image_batches(serialized, shape, batch):
    """tf.data of (images uint8 [B, H, W, C], labels int64 [B], sizes int32 [B, 2]) of the records of `serialized`.

    serialized: tf.data of serialized records, decoded in order, `batch` at a time (parsed together,
    decoded one by one: about 60 us of CPU per 32x32 PNG). sizes: each record's image (height,
    width), (-1, -1) when it holds no image; an image of another size than `shape` comes as zeros.
    Check the sizes with `check_sizes`.
    """
    spec = {'image': tf.io.FixedLenFeature([], tf.string), 'label': tf.io.FixedLenFeature([], tf.int64)}

    def decode_batch(raw):
        record = tf.io.parse_example(raw, spec)
        known = _is_image(record['image'])
        pngs = tf.where(known, record['image'], _PLACEHOLDER)
        decode = lambda png: decode_fitted(png, shape)
        images, sizes = tf.map_fn(decode, pngs, fn_output_signature=(tf.uint8, tf.int32), parallel_iterations=32)
        return images, record['label'], tf.where(known[:, None], sizes, -1)

    return serialized.batch(batch).map(decode_batch, num_parallel_calls=tf.data.AUTOTUNE)


def check_sizes(sizes, shape, path):
    """Raises `checked_decode`'s UserError for the first of `sizes` (int [B, 2], from `image_batches`) not `shape`'s."""
    bad = np.flatnonzero(np.any(sizes != shape[:2], axis=1))
    if len(bad):
        height, width = sizes[bad[0]]
        raise UserError(no_image_message(path) if height < 0 else size_message(path, shape, f'{height}x{width}'))
