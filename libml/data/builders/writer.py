"""Writes a built dataset: one record file per split, the class mapping, extras; counts per class."""

import collections
import os

from libml.data.records import encode_png, write_records
from libml.files import atomic_outputs, write_json


def output_paths(root, name, splits, extra_files=()):
    """Every file that writing dataset `name` with these splits and extra files creates under `root`."""
    return (
        [os.path.join(root, f'{name}-{split}.tfrecord') for split in splits]
        + [os.path.join(root, f'{name}_class_mappings.json')]
        + [os.path.join(root, f) for f in extra_files]
    )


def counting(items, counter):
    """Passes (image, label) pairs through, counting labels into the Counter `counter`."""
    for image, label in items:
        counter[label] += 1
        yield image, label


def write_dataset(root, name, built, overwrite=False):
    """Writes every output of `built` (a common.Built) under `root`: all files appear, or none.

    `<name>-<split>.tfrecord` holds the split's (PNG, label) records in order;
    `<name>_class_mappings.json` maps "0".. to the class names. Returns {split: Counter of labels}.
    """
    splits, extras = list(built.splits), list(built.extras)
    paths = output_paths(root, name, splits, extras)
    counts = {split: collections.Counter() for split in splits}
    with atomic_outputs(paths, overwrite) as tmps:
        for split, tmp in zip(splits, tmps):
            items, total = built.splits[split]
            records = ((encode_png(image), label) for image, label in counting(items, counts[split]))
            write_records(tmp, records, total, overwrite=True, desc=f'{name}-{split}')
        mapping = {str(i): n for i, n in enumerate(built.class_names)}
        write_json(tmps[len(splits)], mapping, overwrite=True)
        for tmp, filename in zip(tmps[len(splits) + 1 :], extras):
            write_json(tmp, built.extras[filename], overwrite=True)
    return counts


def summary(name, class_names, counts):
    """Text table of images per class (rows) and split (columns), plus totals.

    counts: {split: Counter of labels}, as `write_dataset` returns; label -1 is 'unlabelled'.
    """
    splits = list(counts)
    width = max([len(n) for n in class_names] + [len('unlabelled (-1)'), len('total')]) + 6
    lines = [f'{name}: images per class', f'{"class":<{width}}' + ''.join(f'{s:>10}' for s in splits)]
    rows = [(n if n == str(i) else f'{i} {n}', i) for i, n in enumerate(class_names)]
    if any(counts[s][-1] for s in splits):
        rows.append(('unlabelled (-1)', -1))
    for title, label in rows:
        lines.append(f'{title:<{width}}' + ''.join(f'{counts[s][label]:>10}' for s in splits))
    lines.append(f'{"total":<{width}}' + ''.join(f'{sum(counts[s].values()):>10}' for s in splits))
    return '\n'.join(lines)
