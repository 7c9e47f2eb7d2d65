"""SVHN (cropped digits) from the upstream {train,test,extra}_32x32.mat files."""

from libml.data.builders.common import Built, labels_of, pairs
from libml.data.builders.tarmat import load_mat
from libml.errors import UserError

import numpy as np

SPLITS = ('train', 'test', 'extra')
URL = 'http://ufldl.stanford.edu/housenumbers'


def svhn(sources):
    """SVHN -> Built; upstream X is uint8 [32, 32, 3, N], y [N, 1] with 10 meaning digit 0."""
    splits = {}
    for split in SPLITS:
        path = sources.fetch(f'{split}_32x32.mat', URL)
        mat = load_mat(path, ('X', 'y'))
        labels = labels_of(mat['y'], path, 11)
        labels[labels == 10] = 0
        if mat['X'].ndim != 4 or mat['X'].shape[:3] != (32, 32, 3):
            raise UserError(f'{path}: X has shape {mat["X"].shape}, expected [32, 32, 3, N]')
        splits[split] = pairs(np.asarray(mat['X'], np.uint8).transpose(3, 0, 1, 2), labels)
    return Built(splits, [str(d) for d in range(10)], {})
