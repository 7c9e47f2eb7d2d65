#!/usr/bin/env python3
"""Keeps the records of a dataset file whose label is in a list of classes.

Usage:
  filter_dataset.py --class_filter=2,3,4 --filter_dataset=PATH --save_name=NAME|PATH \\
      [--label_order=2,3,4,5,6,7] [--overwrite]

--save_name: a bare name is saved next to the input file, a path where it says; .tfrecord
is appended when missing. --label_order renumbers the listed classes 0..K-1 in that order and
every other kept label to -1 (out of distribution), so label, unlabel and test files filtered
with the same order agree; the class mapping <name>_class_mappings.json of the output
dataset is written for those K classes (a copy of the source mapping without --label_order).

Beside the output goes a map json: for split files ($ML_DATA/SSL/<name>.<seed>@<size>-label
or -unlabel.tfrecord) the split map <name>.<seed>@<size>-map.json is created or updated
(source indices, counts and valid_capacity); for other files <output stem>-map.json. A
filtered unlabel file keeps the held-out labelled records that survive the filter (and still
carry a label) at its head, so they remain usable for validation.

Out-of-distribution experiment on a 10-class split (the unlabelled images come from classes
4-7, i.e. 0% mismatch; for 25% use --class_filter=0,5,6,7 and so on). Every file of the
dataset cifar6_mismatch0.1@250 is written with the same --label_order:
  filter_dataset.py --class_filter=2,3,4,5,6,7 --label_order=2,3,4,5,6,7 \\
      --filter_dataset=$ML_DATA/SSL/cifar10.1@250-label.tfrecord \\
      --save_name=$ML_DATA/SSL/cifar6_mismatch0.1@250-label.tfrecord
  filter_dataset.py --class_filter=4,5,6,7 --label_order=2,3,4,5,6,7 \\
      --filter_dataset=$ML_DATA/SSL/cifar10.1@250-unlabel.tfrecord \\
      --save_name=$ML_DATA/SSL/cifar6_mismatch0.1@250-unlabel.tfrecord
  filter_dataset.py --class_filter=2,3,4,5,6,7 --label_order=2,3,4,5,6,7 \\
      --filter_dataset=$ML_DATA/cifar10-test.tfrecord --save_name=cifar6_mismatch0-test
then train on cifar6_mismatch0.1@250-<valid>, or make an augmented copy of it first.

The test images of the other classes, for the outlier AUROC the trainers report
(outliers/auroc_test_unseen), go to <name>-unseen.tfrecord, where the trainers look for them:
  filter_dataset.py --class_filter=0,1,8,9 --label_order=2,3,4,5,6,7 \\
      --filter_dataset=$ML_DATA/cifar10-test.tfrecord --save_name=cifar6_mismatch0-unseen
Unlabel files filtered with --label_order keep, in their split map, the source file and the
records kept (unlabel_source, unlabel_kept): the trainers read the source labels from there to
tell the records turned into -1 (other classes) from unlabelled ones.
"""

import json
import os

from libml import progress
from libml.data import filtering, record_encoder, splits
from libml.data.names import class_mapping_path, split_paths
from libml.data.records import check_record_file, read_labels
from libml.errors import UserError, cli_main
from libml.files import atomic_outputs, check_writable, read_json

import tensorflow as tf
from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string('class_filter', None, 'Comma-separated labels to keep, e.g. 2,3,4 (required).')
flags.DEFINE_string('filter_dataset', None, 'The .tfrecord file to filter (required).')
flags.DEFINE_string('save_name', None, 'Output: a bare name (saved next to --filter_dataset) or a path (required).')
flags.DEFINE_string(
    'label_order', None, 'Renumber these classes 0..K-1 in this order and every other kept label to -1.'
)
flags.DEFINE_bool('overwrite', False, 'Replace existing output files.')


def ordered_records(path, indices):
    """Yields the PNG bytes of records `indices` of `path`, in that order (read by offset, one at a time)."""
    records = splits.RecordFile([path])
    try:
        for i in indices:
            example = tf.train.Example.FromString(records.read(i))
            yield example.features.feature['image'].bytes_list.value[0]
    finally:
        records.close()


def split_map_update(part, source_part, source_map, kept, new_labels, valid_capacity):
    """The keys a filtered label or unlabel file (`part`) sets in its split map.

    `{part}_kept`: indices into the input file; `{part}`: indices into the original train
    file when the input's own split map has them.
    """
    update = {
        f'{part}_source': os.path.abspath(FLAGS.filter_dataset),
        f'{part}_class_filter': FLAGS.class_filter,
        'label_order': FLAGS.label_order,
        f'{part}_counts': splits.class_counts(new_labels),
        f'{part}_kept': kept.tolist(),
    }
    source_ids = (source_map or {}).get(source_part)
    if source_ids and len(source_ids) > kept.max():
        update[part] = [source_ids[i] for i in kept]
    if part == 'unlabel':
        update['label_size'] = (source_map or {}).get('label_size')
        update['valid_capacity'] = int(valid_capacity)
        update['valid_counts'] = splits.class_counts(new_labels[:valid_capacity])
    return update


def class_mapping(source, output, order):
    """(target path, mapping) for the output dataset's class names, or None when not applicable."""
    src, out = filtering.describe_record_file(source), filtering.describe_record_file(output)
    if not src or not out:
        return None
    src_path = class_mapping_path(src['name'], src['root'])
    names = read_json(src_path, 'class mapping') if os.path.exists(src_path) else None
    if order is not None:
        mapping = {str(i): (names or {}).get(str(c), str(c)) for i, c in enumerate(order)}
    elif names is not None:
        mapping = names
    else:
        return None
    return class_mapping_path(out['name'], out['root']), mapping


def main(argv):
    if len(argv) > 1:
        raise UserError(f'unexpected arguments {" ".join(argv[1:])}: everything is given by flags')
    for name in ('class_filter', 'filter_dataset', 'save_name'):
        if not FLAGS[name].value:
            raise UserError(f'--{name} is required (see --help)')
    class_filter, order = filtering.parse_filter_lists(FLAGS.class_filter, FLAGS.label_order)
    source = FLAGS.filter_dataset
    check_record_file(source, '--filter_dataset file')
    output = filtering.filter_output_path(source, FLAGS.save_name)
    if os.path.exists(output) and os.path.samefile(output, source):
        raise UserError(f'--save_name={FLAGS.save_name} would replace the input file: choose another name')
    check_writable(output, FLAGS.overwrite)
    labels = read_labels(source)
    kept, new_labels = filtering.relabel(labels, class_filter, order)
    if not len(kept):
        raise UserError(
            f'{source} holds no record with a label in {FLAGS.class_filter} '
            f'(its labels: {sorted(set(labels.tolist()))})'
        )

    src_info, out_info = filtering.describe_record_file(source), filtering.describe_record_file(output)
    source_part = src_info['part'] if src_info and src_info['stem'] else None
    source_map = None
    if source_part:
        map_path = split_paths(src_info['stem'], src_info['root'])[2]
        source_map = read_json(map_path, 'split map') if os.path.exists(map_path) else None
    capacity = 0
    if source_part == 'unlabel' and source_map:
        positions, capacity = filtering.heldout_first(kept, new_labels, int(source_map.get('valid_capacity', 0)))
        kept, new_labels = kept[positions], new_labels[positions]

    if out_info and out_info['stem']:
        map_out = split_paths(out_info['stem'], out_info['root'])[2]
        content = read_json(map_out, 'split map') if os.path.exists(map_out) else {}
        if content.get('label_order', FLAGS.label_order) != FLAGS.label_order and not FLAGS.overwrite:
            raise UserError(
                f'{map_out} records --label_order={content["label_order"]} for the other file '
                'of this split: use the same order (or --overwrite)'
            )
        content.update(
            split_map_update(
                out_info['part'],
                source_part,
                source_map,
                kept,
                new_labels,
                capacity if out_info['part'] == 'unlabel' else 0,
            )
        )
    else:
        map_out = output[: -len('.tfrecord')] + '-map.json'
        check_writable(map_out, FLAGS.overwrite)
        content = {
            'source': os.path.abspath(source),
            'class_filter': FLAGS.class_filter,
            'label_order': FLAGS.label_order,
            'counts': splits.class_counts(new_labels),
            'kept': kept.tolist(),
        }

    outputs = [output, map_out]
    mapping = class_mapping(source, output, order)
    if mapping:
        target, names = mapping
        if os.path.exists(target) and read_json(target, 'class mapping') == names:
            mapping = None
        elif os.path.exists(target) and not FLAGS.overwrite:
            raise UserError(f'{target} already exists with other class names: pass --overwrite to replace it')
        else:
            outputs.append(target)

    with atomic_outputs(outputs, overwrite=True) as tmps:
        with tf.io.TFRecordWriter(tmps[0]) as writer:
            records = ordered_records(source, kept)
            for png, label in progress.bar(zip(records, new_labels), total=len(kept), desc='filter', unit='img'):
                writer.write(record_encoder.example_bytes(png, label))
        splits.write_map(tmps[1], content)
        if mapping:
            with open(tmps[2], 'w') as f:
                json.dump(mapping[1], f, indent=2)
                f.write('\n')
    print(
        f'{output}: {len(kept)} of {len(labels)} records kept, labels '
        + ', '.join(f'{c}: {n}' for c, n in splits.class_counts(new_labels).items())
        + (f'; the first {capacity} are held-out labelled records (validation)' if capacity else '')
    )


if __name__ == '__main__':
    app.run(cli_main(main))
