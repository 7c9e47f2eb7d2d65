#!/usr/bin/env python3
"""Summarises dataset files: record count, records per class, label range, image shapes.

Usage:
  scripts/inspect_dataset.py FILE.tfrecord...

Example:
  scripts/inspect_dataset.py $ML_DATA/digits-train.tfrecord $ML_DATA/SSL/digits.1@50-label.tfrecord
"""

import io
import os
from collections import Counter

from libml import progress
from libml.data.records import check_record_file, read_records
from libml.errors import UserError, cli_main

from absl import app
from PIL import Image, UnidentifiedImageError

_CHANNELS = {'L': 1, 'P': 1, 'LA': 2, 'RGB': 3, 'RGBA': 4, 'I;16': 1}


def image_shape(png, path, index):
    """(H, W, C) of an encoded image, read from its header only."""
    try:
        image = Image.open(io.BytesIO(png))
    except UnidentifiedImageError:
        raise UserError(f'{path}: record {index} does not hold a readable image') from None
    width, height = image.size
    return height, width, _CHANNELS.get(image.mode, len(image.getbands()))


def summarise(path):
    """dict(records, labels Counter, shapes Counter) of one record file."""
    labels, shapes = Counter(), Counter()
    for index, (png, label) in enumerate(
        progress.bar(read_records(path), desc=os.path.basename(path), unit='img', leave=False)
    ):
        labels[int(label)] += 1
        shapes[image_shape(png, path, index)] += 1
    return dict(records=sum(labels.values()), labels=labels, shapes=shapes)


def report(path, summary):
    """The printed summary of one file, as lines."""
    labels, shapes = summary['labels'], summary['shapes']
    lines = [path, f'  records: {summary["records"]}']
    if not summary['records']:
        return lines
    known = [c for c in labels if c >= 0]
    lines.append(f'  labelled: {sum(labels[c] for c in known)}, unlabelled (-1): {labels.get(-1, 0)}')
    lines.append(
        f'  label range: {min(labels)}..{max(labels)}' + (f' ({len(known)} classes with records)' if known else '')
    )
    lines.append('  per class: ' + ', '.join(f'{c}: {labels[c]}' for c in sorted(labels)))
    lines.append('  image shapes (HxWxC): ' + ', '.join(f'{h}x{w}x{c}: {n}' for (h, w, c), n in shapes.most_common()))
    lines.append('  channels: ' + ', '.join(str(c) for c in sorted({c for _, _, c in shapes})))
    return lines


def main(argv):
    paths = argv[1:]
    if not paths:
        raise UserError(
            'expected at least one .tfrecord file, e.g. scripts/inspect_dataset.py $ML_DATA/digits-train.tfrecord'
        )
    for path in paths:
        check_record_file(path)
    for path in paths:
        print('\n'.join(report(path, summarise(path))))


if __name__ == '__main__':
    app.run(cli_main(main))
