"""What a builder returns, and the small array helpers the builders share."""

import collections

from libml.errors import UserError

import numpy as np

# A dataset ready to write: splits maps a split name ('train') to (iterable of
# (uint8 image [H, W, C], label), count), in file order; class_names lists the names of
# classes 0..K-1; extras maps a file name under the data root to a JSON object.
Built = collections.namedtuple('Built', 'splits class_names extras')


def labels_of(array, source, nclass, offset=0):
    """Flattens an upstream label array, subtracts `offset`, checks the range 0..nclass-1.

    Returns int64 [N]; UserError naming `source` for a label out of range.
    """
    labels = np.ravel(array).astype(np.int64) - offset
    if labels.size and (labels.min() < 0 or labels.max() >= nclass):
        raise UserError(f'{source} has labels outside {offset}..{nclass - 1 + offset}')
    return labels


def pairs(images, labels):
    """(iterable of (image, label), count) over images [N, H, W, C] and labels [N]."""
    if len(images) != len(labels):
        raise UserError(f'{len(images)} images but {len(labels)} labels in the upstream data')
    return zip(images, labels.tolist()), len(labels)


def chain(*parts):
    """Concatenates (iterable, count) pairs into one."""

    def items():
        for iterable, _ in parts:
            yield from iterable

    return items(), sum(count for _, count in parts)
