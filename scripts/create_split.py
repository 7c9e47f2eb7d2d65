#!/usr/bin/env python3
"""Creates a semi-supervised split of labelled and unlabelled records.

Usage:
  scripts/create_split.py --seed=S --label_split_size=N [--label_size=M] [--overwrite] \\
      OUT_PREFIX INPUT.tfrecord...

Reads the labels of every record of the inputs (in order). The labelled pool is the records
with a label (>= 0) among the first M (--label_size; all records by default). N of them are
picked, class-balanced (N/K per class, the remainder going to the largest classes) and
shuffled by seed S (S=0 keeps file order). The records are copied as they are, read one by one
by their offset (never all in memory). Writes, next to OUT_PREFIX (its last part is the dataset
name, e.g. $ML_DATA/SSL/cifar10):
  OUT_PREFIX.S@N-label.tfrecord    the N picked records
  OUT_PREFIX.S@N-unlabel.tfrecord  the held-out pool records first (classes interleaved:
                                   the validation images), then every other record as is
  OUT_PREFIX.S@N-map.json          source indices, valid_capacity (held-out count), counts

Examples:
  scripts/create_split.py --seed=1 --label_split_size=250 $ML_DATA/SSL/cifar10 \\
      $ML_DATA/cifar10-train.tfrecord
  scripts/create_split.py --seed=1 --label_split_size=450 --label_size=500 \\
      $ML_DATA/SSL/mydataset $ML_DATA/mydataset-train.tfrecord
"""

import os

from libml import progress
from libml.data import checks, records, splits
from libml.data.names import test_path
from libml.data.records import check_record_file
from libml.errors import UserError, cli_main, warn
from libml.files import atomic_outputs

import numpy as np
import tensorflow as tf
from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_integer('seed', 0, 'Shuffling seed; 0 keeps file order (no shuffle).')
flags.DEFINE_integer('label_split_size', None, 'Number of labelled records to pick (required).')
flags.DEFINE_integer(
    'label_size',
    None,
    'Only the first this many records form the labelled pool (for custom datasets '
    'whose train file holds labelled then unlabelled images); default: all.',
)
flags.DEFINE_bool('overwrite', False, 'Replace existing output files.')


def read_labels(paths):
    """Every record's label, the files of `paths` concatenated in order (also checks their CRCs)."""
    for path in paths:
        check_record_file(path, 'input file')
    return np.concatenate([records.read_labels(path) for path in paths])


def split_map(split, labels, inputs):
    """The -map.json content of a split (see splits.make_split)."""
    return {
        'seed': FLAGS.seed,
        'label_split_size': FLAGS.label_split_size,
        'label_size': FLAGS.label_size,
        'inputs': [os.path.abspath(p) for p in inputs],
        'valid_capacity': int(split['valid_capacity']),
        'label_counts': splits.class_counts(labels[split['label']]),
        'valid_counts': splits.class_counts(labels[split['unlabel'][: split['valid_capacity']]]),
        'unlabel_counts': splits.class_counts(labels[split['unlabel']]),
        'label': split['label'].tolist(),
        'unlabel': split['unlabel'].tolist(),
    }


def write_subset(path, records, indices, desc):
    """Writes records `indices` of the RecordFile `records`, as they are, to `path` (a temporary file)."""
    with tf.io.TFRecordWriter(path) as writer:
        for i in progress.bar(indices, desc=desc, unit='img'):
            writer.write(records.read(i))


def main(argv):
    if len(argv) < 3:
        raise UserError(
            'expected OUT_PREFIX and at least one INPUT.tfrecord, e.g. '
            'scripts/create_split.py --seed=1 --label_split_size=250 '
            '$ML_DATA/SSL/cifar10 $ML_DATA/cifar10-train.tfrecord'
        )
    if FLAGS.label_split_size is None:
        raise UserError('--label_split_size is required (the number of labelled records to pick)')
    prefix, inputs = argv[1], argv[2:]
    name = splits.check_stem(prefix)
    root = os.path.dirname(os.path.dirname(os.path.abspath(prefix)))  # $ML_DATA of $ML_DATA/SSL/<name>
    checks.check_not_test_file(inputs, test_path(name, root))
    checks.check_distinct_files(inputs)
    if FLAGS.seed < 0:
        raise UserError(f'--seed={FLAGS.seed}: must be >= 0')
    stem = f'{prefix}.{FLAGS.seed}@{FLAGS.label_split_size}'
    outputs = [stem + '-label.tfrecord', stem + '-unlabel.tfrecord', stem + '-map.json']
    for path in outputs:
        if os.path.exists(path) and not FLAGS.overwrite:
            raise UserError(f'{path} already exists: pass --overwrite to replace it')
    labels = read_labels(inputs)
    split = splits.make_split(labels, FLAGS.label_split_size, FLAGS.seed, FLAGS.label_size)
    unlabelled_classes = [c for c, quota in split['quotas'].items() if quota == 0]
    if unlabelled_classes:
        warn(
            f'{len(unlabelled_classes)} of the {len(split["quotas"])} classes get no labelled image: '
            f'--label_split_size={FLAGS.label_split_size} is under one per class'
        )
    records = splits.RecordFile(inputs)
    try:
        with atomic_outputs(outputs, FLAGS.overwrite) as (label_tmp, unlabel_tmp, map_tmp):
            write_subset(label_tmp, records, split['label'], 'label')
            write_subset(unlabel_tmp, records, split['unlabel'], 'unlabel')
            splits.write_map(map_tmp, split_map(split, labels, inputs))
    finally:
        records.close()
    print(
        f'{outputs[0]}: {len(split["label"])} labelled records '
        f'({", ".join(f"{c}: {n}" for c, n in sorted(split["quotas"].items()))})'
    )
    print(
        f'{outputs[1]}: {len(split["unlabel"])} records, the first {split["valid_capacity"]} '
        'held out with labels (usable for validation)'
    )


if __name__ == '__main__':
    app.run(cli_main(main))
