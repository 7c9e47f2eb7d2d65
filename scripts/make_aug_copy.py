#!/usr/bin/env python3
"""Writes an augmented copy of a split: K augmented versions of every training-unlabelled image.

Usage:
  scripts/make_aug_copy.py --aug_dataset=<name>.<seed>@<size> --aug_copy=K \\
      --augment=cifar10|svhn|stl10|stl-10|color|cutout [--unlabel_size=U] [--valid_size=V] \\
      [--seed=S] [--workers=N] [--overwrite]

Reads $ML_DATA/SSL/<name>.<seed>@<size>-{label,unlabel}.tfrecord and -map.json and writes the
dataset <name>_aug<K>.<seed>@<size>:
  SSL/<name>_aug<K>.<seed>@<size>-unlabel.tfrecord  the first V held-out labelled records of
      the source unlabel file, un-augmented (the validation images), then K augmented
      copies of each unlabelled training image, shuffled with a seeded buffer (--copy_buffer).
      Streamed: memory stays flat whatever K (under 1 GB, most of it TensorFlow).
  SSL/<name>_aug<K>.<seed>@<size>-label.tfrecord    a copy of the labelled file
  SSL/<name>_aug<K>.<seed>@<size>-map.json          valid_capacity = clean_head = V, counts
  <name>_aug<K>-test.tfrecord, <name>_aug<K>_class_mappings.json   copies (shared by every
      split of the dataset: left alone when identical)

V (--valid_size) defaults to every held-out labelled record, so any <valid> the source split
allowed works on the copy: train on <name>_aug<K>.<seed>@<size>-<valid>. The clean head is
never trained on. Which images are augmented depends on how the split was made:
  - benchmark splits (no --label_size): every record of the unlabel file, as in the original
    release; the validation images are then also among the (augmented, unlabelled) training
    images, and --unlabel_size is the whole unlabel file (49,750 for cifar10.1@250);
  - custom splits (--label_size): the records after the V validation images, so validation
    images are never trained on.

Copy k of image i (element e = k * N + i of the stream, N images) is augmented with the
stateless seed (--seed, e) by the same functions (libml/data/augment.py) as online training. The
images are decoded once into a scratch file beside the output (removed at the end), then
--workers threads augment, PNG-encode and serialize chunks of the shuffled stream; the file is
the same byte for byte whatever the number of threads.

Example:
  scripts/make_aug_copy.py --aug_dataset=cifar10.1@250 --unlabel_size=49750 --aug_copy=50 \\
      --augment=cutout
"""

import filecmp
import os
import shutil
from collections import Counter

from libml import progress
from libml.data import aug_copies, splits
from libml.data import augment as augment_lib
from libml.data.names import class_mapping_path, data_dir, parse_split_name, split_paths, test_path
from libml.data.records import check_record_file, count_records, first_image_shape
from libml.errors import UserError, cli_main
from libml.files import atomic_outputs, read_json, temporary_file

import numpy as np
import tensorflow as tf
from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string('aug_dataset', None, 'Source split <name>.<seed>@<size>, e.g. cifar10.1@250 (required).')
flags.DEFINE_integer('aug_copy', None, 'Augmented copies of each training-unlabelled image (required).')
flags.DEFINE_string('augment', None, 'Augmentation: cifar10, svhn, stl10 (or stl-10), color or cutout (required).')
flags.DEFINE_integer('unlabel_size', None, 'Expected number of training-unlabelled images (checked against the data).')
flags.DEFINE_integer(
    'valid_size',
    None,
    'Held-out labelled records carried over un-augmented for validation (default: see the help text above).',
)
flags.DEFINE_integer('seed', None, 'Augmentation and shuffling seed (default: the split seed).')
flags.DEFINE_integer('copy_buffer', 10000, 'Shuffle buffer of the augmented stream, in images.')
flags.DEFINE_integer(
    'workers', 0, 'Threads making the augmented images (0: one per CPU core). The output is the same for any number.'
)
flags.DEFINE_bool('overwrite', False, 'Replace existing output files.')


def check_flags():
    """UserError for missing or out-of-range flags; returns the parsed source split name."""
    for name in ('aug_dataset', 'aug_copy', 'augment'):
        if FLAGS[name].value is None:
            raise UserError(f'--{name} is required (see --help)')
    if FLAGS.augment not in augment_lib.AUGMENTATIONS or FLAGS.augment == 'none':
        what = 'would write identical copies' if FLAGS.augment == 'none' else 'is not an augmentation'
        raise UserError(f'--augment={FLAGS.augment} {what}: choose cifar10, svhn, stl10, color or cutout')
    if FLAGS.aug_copy < 1:
        raise UserError(f'--aug_copy={FLAGS.aug_copy}: must be at least 1')
    if FLAGS.copy_buffer < 1:
        raise UserError(f'--copy_buffer={FLAGS.copy_buffer}: must be at least 1')
    if FLAGS.workers < 0:
        raise UserError(f'--workers={FLAGS.workers}: must be 0 (one per CPU core) or more')
    return parse_split_name(FLAGS.aug_dataset)


def shared_copies(pairs):
    """(source, target) copies shared by every split; drops those already there and identical.

    UserError when a target differs from its source and --overwrite is not given.
    """
    todo = []
    for source, target in pairs:
        if os.path.exists(target) and not FLAGS.overwrite:
            if not filecmp.cmp(source, target, shallow=False):
                raise UserError(f'{target} already exists and differs from {source}: pass --overwrite to replace it')
            continue
        todo.append((source, target))
    return todo


def copy_head(writer, source, valid, bar):
    """Writes the first `valid` records of `source` as they are; returns their labels."""
    spec = {'label': tf.io.FixedLenFeature([], tf.int64)}
    records = tf.data.TFRecordDataset(source, buffer_size=1 << 20).take(valid).batch(1024)
    out = []
    for raw, label in records.map(lambda r: (r, tf.io.parse_example(r, spec)['label'])).as_numpy_iterator():
        for record in raw:
            writer.write(record)
        out.append(label)
        bar.update(len(raw))
    return np.concatenate(out) if out else np.zeros([0], np.int64)


def write_unlabel(path, output, source, valid, start, count, shape, seed):
    """Head of `valid` source records as is, then the augmented copies of records start..start+count.

    `path` is the temporary file of `output`; the scratch file of decoded images goes beside
    `output` too. Returns the label counts.
    """
    workers = FLAGS.workers or os.cpu_count() or 1
    with temporary_file(output) as scratch:
        pixels, labels = aug_copies.PixelFile.decode(scratch, source, start, count, shape)
        try:
            chunks = aug_copies.augmented_records(
                pixels, labels, FLAGS.aug_copy, FLAGS.augment, seed, FLAGS.copy_buffer, workers
            )
            total = valid + FLAGS.aug_copy * count
            shown = progress.bar(total=total, desc='unlabel', unit='img', leave=True)
            with tf.io.TFRecordWriter(path) as writer, shown as bar:
                head = copy_head(writer, source, valid, bar)
                for records in chunks:
                    for record in records:
                        writer.write(record)
                    bar.update(len(records))
        finally:
            pixels.close()
    counts = Counter(head.tolist())
    for label, n in Counter(labels.tolist()).items():
        counts[label] += FLAGS.aug_copy * n
    return counts


def main(argv):
    if len(argv) > 1:
        raise UserError(f'unexpected arguments {" ".join(argv[1:])}: everything is given by flags')
    source = check_flags()
    label_src, unlabel_src, map_src = split_paths(source.split)
    for path in (label_src, unlabel_src):
        check_record_file(path, 'split file')
    source_map = read_json(map_src, 'split map')
    test_src = test_path(source.name)
    check_record_file(test_src, 'test file')
    total = count_records(unlabel_src)
    capacity = min(int(source_map.get('valid_capacity', 0)), total)
    valid = aug_copies.choose_valid_size(capacity, FLAGS.valid_size)
    start = valid if source_map.get('label_size') is not None else 0
    count = total - start
    if FLAGS.unlabel_size is not None and FLAGS.unlabel_size != count:
        raise UserError(
            f'--unlabel_size={FLAGS.unlabel_size}, but {unlabel_src} holds {count} '
            f'unlabelled training records ({total} records, from record {start} on): '
            'fix or drop the flag'
        )
    if count == 0:
        raise UserError(
            f'{unlabel_src} has no records left to augment after the {valid} validation records: lower --valid_size'
        )
    name = f'{source.name}_aug{FLAGS.aug_copy}'
    stem = f'{name}.{source.seed}@{source.size}'
    label_out, unlabel_out, map_out = split_paths(stem)
    shared = [(test_src, test_path(name))]
    if os.path.exists(class_mapping_path(source.name)):
        shared.append((class_mapping_path(source.name), class_mapping_path(name)))
    shared = shared_copies(shared)
    seed = source.seed if FLAGS.seed is None else FLAGS.seed
    shape = first_image_shape(unlabel_src)
    outputs = [label_out, unlabel_out, map_out] + [target for _, target in shared]
    with atomic_outputs(outputs, FLAGS.overwrite) as tmps:
        print(
            f'{unlabel_out}: {valid} validation records, then {FLAGS.aug_copy} x {count} augmented '
            f'({FLAGS.augment}) images, {FLAGS.workers or os.cpu_count() or 1} worker thread(s)'
        )
        shutil.copyfile(label_src, tmps[0])
        counts = write_unlabel(tmps[1], unlabel_out, unlabel_src, valid, start, count, shape, seed)
        splits.write_map(
            tmps[2],
            {
                'source': source.split,
                'aug_copy': FLAGS.aug_copy,
                'augment': FLAGS.augment,
                'seed': seed,
                'valid_capacity': valid,
                'clean_head': valid,
                'train_unlabelled': count,
                'records': valid + FLAGS.aug_copy * count,
                'label_size': source_map.get('label_size'),
                'label_counts': source_map.get('label_counts'),
                'unlabel_counts': {str(k): v for k, v in sorted(counts.items())},
                'label': source_map.get('label'),
                'unlabel_head': source_map.get('unlabel', [])[:valid],
            },
        )
        for (src, _), tmp in zip(shared, tmps[3:]):
            shutil.copyfile(src, tmp)
    print(
        f'wrote {name}.{source.seed}@{source.size} (train with --dataset={stem}-<valid>, '
        f'<valid> <= {valid}) in {data_dir()}'
    )


if __name__ == '__main__':
    app.run(cli_main(main))
