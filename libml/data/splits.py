"""Semi-supervised splits (create_split.py): a class-balanced choice of labelled records, and the split files.

Index arithmetic is pure numpy so it can be tested without files; `RecordFile` copies records as
stored, and `write_map` writes the `-map.json` beside every split (also filtered and augmented ones).
"""

import json
import os
import re
import struct

from libml.data.records import check_record_file
from libml.errors import UserError

import numpy as np

_STEM_RE = re.compile(r'^[A-Za-z0-9_]+$')


def check_stem(prefix):
    """UserError unless the last component of `prefix` is a valid dataset name."""
    stem = os.path.basename(prefix)
    if not _STEM_RE.match(stem):
        raise UserError(
            f'output prefix {prefix!r}: its last part {stem!r} must be a dataset name '
            'of letters, digits and _ only (e.g. $ML_DATA/SSL/cifar10)'
        )
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
        raise UserError(
            f'--label_split_size={size} exceeds the {total} labelled records in the pool: '
            'lower it, or raise --label_size'
        )
    base, extra = divmod(size, len(classes))
    quotas = dict.fromkeys(classes, base)
    for c in sorted(classes, key=lambda c: (-available[c], c))[:extra]:
        quotas[c] += 1
    for c in classes:
        if quotas[c] > available[c]:
            raise UserError(
                f'class {c} has only {available[c]} labelled records in the pool but a '
                f'balanced split of {size} over {len(classes)} classes needs {quotas[c]}: '
                'lower --label_split_size'
            )
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
        raise UserError(
            f'--label_size={label_size}: must be between 1 and the {len(labels)} records of the input files'
        )
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
    picked = np.concatenate([m[: quotas[c]] for c, m in by_class.items()])
    picked = rng.permutation(picked) if rng else np.sort(picked)
    held = round_robin([m[quotas[c] :] for c, m in by_class.items()])
    outside = np.ones(len(labels), bool)
    outside[pool] = False
    unlabel = np.concatenate([held, np.flatnonzero(outside)])
    return {'label': picked, 'unlabel': unlabel, 'valid_capacity': len(held), 'quotas': quotas}


class RecordFile:
    """Random access to the raw records of TFRecord files, numbered across the files in order.

    Reads each file's framing once (record offsets and lengths, 16 bytes a record in memory);
    `read(i)` then returns record i's serialized bytes, as stored. No CRC check: read the file
    once with TensorFlow (e.g. data.read_labels) to verify it.
    """

    def __init__(self, paths):
        self._files, offsets, lengths, owners = [], [], [], []
        for number, path in enumerate(paths):
            check_record_file(path)
            size = os.path.getsize(path)
            self._files.append(open(path, 'rb'))  # noqa: SIM115 (closed by close())
            f, position = self._files[-1], 0
            while position < size:
                f.seek(position)
                header = f.read(12)
                length = struct.unpack('<Q', header[:8])[0] if len(header) == 12 else size
                if position + 16 + length > size:
                    self.close()
                    raise UserError(
                        f'{path} is truncated or not a record file (record {len(offsets)} runs past '
                        'its end): re-create it'
                    )
                offsets.append(position + 12)
                lengths.append(length)
                owners.append(number)
                position += 16 + length
        self.offsets, self.lengths = np.array(offsets, np.int64), np.array(lengths, np.int64)
        self._owners = np.array(owners, np.int32)

    def __len__(self):
        return len(self.offsets)

    def read(self, index):
        """The serialized bytes of record `index`."""
        fd = self._files[self._owners[index]].fileno()
        return os.pread(fd, int(self.lengths[index]), int(self.offsets[index]))

    def close(self):
        for f in self._files:
            f.close()


def class_counts(labels):
    """{"<class>": count} over an int array (keys as strings, -1 included), for map files."""
    values, counts = np.unique(np.asarray(labels, np.int64), return_counts=True)
    return {str(int(v)): int(n) for v, n in zip(values, counts)}


def write_map(path, content):
    """Writes a map json with one key per line (index lists stay on one line each)."""
    lines = [f'  {json.dumps(key)}: {json.dumps(value, sort_keys=True)}' for key, value in content.items()]
    with open(path, 'w') as f:
        f.write('{\n' + ',\n'.join(lines) + '\n}\n')
