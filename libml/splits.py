"""The logic behind create_split.py, make_aug_copy.py and filter_dataset.py.

Index arithmetic is pure numpy so it can be tested without files; the augmented-copy stream
is a tf.data pipeline that never holds more than its shuffle buffer in memory.
"""

import json
import os
import re

import numpy as np
import tensorflow as tf

from libml import augment as augment_lib
from libml.data import parse_example
from libml.utils import UserError, parse_int_list

_STEM_RE = re.compile(r'^[A-Za-z0-9_]+$')
_SPLIT_FILE_RE = re.compile(r'^(?P<stem>(?P<name>[A-Za-z0-9_]+)\.\d+@\d+)-(?P<part>label|unlabel)\.tfrecord$')
_PLAIN_FILE_RE = re.compile(r'^(?P<name>[A-Za-z0-9_]+)-(?P<part>[A-Za-z]+)\.tfrecord$')


# --------------------------------------------------------------------------- create_split

def check_stem(prefix):
    """UserError unless the last component of `prefix` is a valid dataset name."""
    stem = os.path.basename(prefix)
    if not _STEM_RE.match(stem):
        raise UserError(f'output prefix {prefix!r}: its last part {stem!r} must be a dataset name '
                        'of letters, digits and _ only (e.g. $ML_DATA/SSL/cifar10)')
    return stem


def class_quotas(available, size):
    """How many records each class gives to a balanced split of `size`.

    available: {class: number of labelled records in the pool}. Every class gets
    size // K; the size % K remaining go one each to the classes with the most records
    (ties: lower class id). Returns {class: quota}; UserError when a class has too few.
    """
    classes = sorted(available)
    total = sum(available.values())
    if size > total:
        raise UserError(f'--label_split_size={size} exceeds the {total} labelled records in the pool: '
                        'lower it, or raise --label_size')
    base, extra = divmod(size, len(classes))
    quotas = {c: base for c in classes}
    for c in sorted(classes, key=lambda c: (-available[c], c))[:extra]:
        quotas[c] += 1
    for c in classes:
        if quotas[c] > available[c]:
            raise UserError(f'class {c} has only {available[c]} labelled records in the pool but a '
                            f'balanced split of {size} over {len(classes)} classes needs {quotas[c]}: '
                            'lower --label_split_size')
    return quotas


def round_robin(groups):
    """Interleaves index arrays: g0[0], g1[0], ..., g0[1], g1[1], ... (exhausted groups skipped)."""
    groups = [np.asarray(g, np.int64) for g in groups]
    if not groups or not sum(len(g) for g in groups):
        return np.zeros([0], np.int64)
    indices = np.concatenate(groups)
    rank = np.concatenate([np.arange(len(g)) for g in groups])
    group = np.concatenate([np.full(len(g), i) for i, g in enumerate(groups)])
    return indices[np.lexsort((group, rank))]


def make_split(labels, size, seed, label_size=None):
    """Chooses a class-balanced labelled split.

    labels: int array, the label of every input record in file order (-1 = unlabelled).
    The pool is the labelled records among the first `label_size` (all when None). Seed 0
    keeps file order; any other seed shuffles. Returns a dict with `label` (source indices
    of the picked records, in output order), `unlabel` (held-out pool records, classes
    interleaved, then every other record in file order), `valid_capacity` (held-out count)
    and `quotas` ({class: picked}).
    """
    labels = np.asarray(labels, np.int64)
    if not len(labels):
        raise UserError('the input files hold no records')
    if size <= 0:
        raise UserError(f'--label_split_size={size}: must be positive')
    head = len(labels) if label_size is None else label_size
    if not 0 < head <= len(labels):
        raise UserError(f'--label_size={label_size}: must be between 1 and the {len(labels)} records '
                        'of the input files')
    pool = np.flatnonzero(labels[:head] >= 0)
    classes = np.unique(labels[labels >= 0])
    if not len(classes):
        raise UserError('the input files hold no labelled records (every label is -1)')
    rng = np.random.RandomState(seed) if seed else None
    by_class = {}
    for c in classes:
        members = pool[labels[pool] == c]
        by_class[int(c)] = rng.permutation(members) if rng else members
    quotas = class_quotas({c: len(m) for c, m in by_class.items()}, size)
    picked = np.concatenate([m[:quotas[c]] for c, m in by_class.items()])
    picked = rng.permutation(picked) if rng else np.sort(picked)
    held = round_robin([m[quotas[c]:] for c, m in by_class.items()])
    outside = np.ones(len(labels), bool)
    outside[pool] = False
    unlabel = np.concatenate([held, np.flatnonzero(outside)])
    return dict(label=picked, unlabel=unlabel, valid_capacity=len(held), quotas=quotas)


def class_counts(labels):
    """{"<class>": count} over an int array (keys as strings, -1 included), for map files."""
    values, counts = np.unique(np.asarray(labels, np.int64), return_counts=True)
    return {str(int(v)): int(n) for v, n in zip(values, counts)}


# --------------------------------------------------------------------------- make_aug_copy

def augmented_stream(path, skip, count, copies, augment, seed, shape, buffer=10000):
    """tf.data stream of (PNG bytes, label): `copies` augmented versions of records skip..skip+count.

    Copy k of record i is augmented with the stateless seed (seed, k * count + i), so the
    output does not depend on parallelism; the stream is shuffled with a seeded buffer of
    `buffer` elements. shape: (H, W, C) of every image.
    """
    augment_fn = augment_lib.get(augment)
    records = tf.data.TFRecordDataset(path).skip(skip).take(count).map(parse_example)

    def one_copy(k):
        return records.enumerate().map(lambda i, r: (k * count + i, r))

    def augment_one(index, record):
        image = tf.ensure_shape(tf.io.decode_png(record['image'], channels=shape[2]), shape)
        image = tf.image.convert_image_dtype(image, tf.float32)
        image = augment_fn(image, tf.stack([tf.constant(seed, tf.int64), index]))
        image = tf.image.convert_image_dtype(image, tf.uint8, saturate=True)
        return tf.io.encode_png(image), record['label']

    ds = tf.data.Dataset.range(copies).flat_map(one_copy)
    ds = ds.map(augment_one, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.shuffle(buffer, seed=seed).prefetch(tf.data.AUTOTUNE)


def choose_valid_size(valid_capacity, valid_size=None):
    """Held-out records an augmented copy carries over un-augmented for validation (default: all)."""
    if valid_size is None:
        return valid_capacity
    if not 0 <= valid_size <= valid_capacity:
        raise UserError(f'--valid_size={valid_size}: must be between 0 and the {valid_capacity} '
                        'held-out labelled records at the head of the unlabel file')
    return valid_size


# --------------------------------------------------------------------------- filter_dataset

def parse_filter_lists(class_filter, label_order=None):
    """--class_filter and --label_order texts -> (list of ints, list or None), checked."""
    values = {'class_filter': parse_int_list(class_filter, 'class_filter'),
              'label_order': parse_int_list(label_order, 'label_order') if label_order else None}
    for flag, classes in values.items():
        text = class_filter if flag == 'class_filter' else label_order
        if classes and len(set(classes)) != len(classes):
            raise UserError(f'--{flag}={text} lists a class twice')
        lowest = -1 if flag == 'class_filter' else 0
        if classes and min(classes) < lowest:
            raise UserError(f'--{flag}={text}: classes are labels >= 0'
                            + (' (or -1 for unlabelled records)' if lowest < 0 else ''))
    return values['class_filter'], values['label_order']


def filter_output_path(source, save_name):
    """Where --save_name puts a filtered file: beside `source` for a bare name; .tfrecord appended."""
    if not save_name.endswith('.tfrecord'):
        save_name += '.tfrecord'
    if os.path.dirname(save_name):
        return save_name
    return os.path.join(os.path.dirname(source), save_name)


def relabel(labels, class_filter, label_order=None):
    """Which records a filter keeps and their new labels.

    labels: int array. Keeps records whose label is in `class_filter`; with `label_order`,
    the listed classes become 0..K-1 in that order and every other kept label -1.
    Returns (kept indices, new labels of the kept records).
    """
    labels = np.asarray(labels, np.int64)
    kept = np.flatnonzero(np.isin(labels, class_filter))
    new = labels[kept]
    if label_order is not None:
        lookup = {c: i for i, c in enumerate(label_order)}
        new = np.array([lookup.get(int(v), -1) for v in new], np.int64)
    return kept, new


def heldout_first(kept, new_labels, valid_capacity):
    """Orders a filtered split unlabel file so its held-out labelled records open it.

    kept: increasing source indices; records with index < valid_capacity came from the
    source's held-out head. Returns (positions into `kept` in output order, new capacity):
    head records still labelled, then head records relabelled -1, then the rest.
    """
    kept = np.asarray(kept)
    new_labels = np.asarray(new_labels)
    in_head = kept < valid_capacity
    groups = [np.flatnonzero(in_head & (new_labels >= 0)), np.flatnonzero(in_head & (new_labels < 0)),
              np.flatnonzero(~in_head)]
    return np.concatenate(groups), len(groups[0])


def describe_record_file(path):
    """What a record file's name says: dict(root, name, part, stem) or None when unrecognised.

    `$ML_DATA/SSL/<name>.<seed>@<size>-label.tfrecord` -> part 'label', stem '<name>.<seed>@<size>',
    root $ML_DATA; `$ML_DATA/<name>-test.tfrecord` -> part 'test', stem None, root $ML_DATA.
    """
    directory, base = os.path.split(os.path.abspath(path))
    match = _SPLIT_FILE_RE.match(base)
    if match:
        return dict(root=os.path.dirname(directory), name=match['name'], part=match['part'],
                    stem=match['stem'])
    match = _PLAIN_FILE_RE.match(base)
    if match:
        return dict(root=directory, name=match['name'], part=match['part'], stem=None)
    return None


def write_map(path, content):
    """Writes a map json with one key per line (index lists stay on one line each)."""
    lines = [f'  {json.dumps(key)}: {json.dumps(value, sort_keys=True)}' for key, value in content.items()]
    with open(path, 'w') as f:
        f.write('{\n' + ',\n'.join(lines) + '\n}\n')
