"""CIFAR-10 and CIFAR-100 from their upstream MATLAB tarballs."""

from libml.data.builders.common import Built, labels_of, pairs
from libml.data.builders.tarmat import mat_strings, open_tar, tar_mat
from libml.errors import UserError

import numpy as np

SPLITS = ('train', 'test')
URL = 'https://www.cs.toronto.edu/~kriz'


def cifar_images(data, source):
    """CIFAR MATLAB rows uint8 [N, 3072] (R, G, B planes of 32x32, row-major) -> [N, 32, 32, 3]."""
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise UserError(f'{source}: data has shape {data.shape}, expected [N, 3072]')
    return np.asarray(data, np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


def build(path, folder, train_members, test_member, meta_member, label_key, names_key):
    """A CIFAR MATLAB tarball at `path` -> Built (train, test)."""
    with open_tar(path) as tar:
        train = [tar_mat(tar, f'{folder}/{m}', ('data', label_key)) for m in train_members]
        test = tar_mat(tar, f'{folder}/{test_member}', ('data', label_key))
        names = mat_strings(tar_mat(tar, f'{folder}/{meta_member}', (names_key,))[names_key])
    nclass = len(names)
    train_x = np.concatenate([cifar_images(m['data'], path) for m in train])
    train_y = np.concatenate([labels_of(m[label_key], path, nclass) for m in train])
    test_x, test_y = cifar_images(test['data'], path), labels_of(test[label_key], path, nclass)
    return Built({'train': pairs(train_x, train_y), 'test': pairs(test_x, test_y)}, names, {})


def cifar10(sources):
    """cifar-10-matlab.tar.gz (5 training batches of 10,000, a test batch) -> Built."""
    path = sources.fetch('cifar-10-matlab.tar.gz', URL)
    batches = [f'data_batch_{i}.mat' for i in range(1, 6)]
    return build(path, 'cifar-10-batches-mat', batches, 'test_batch.mat', 'batches.meta.mat', 'labels', 'label_names')


def cifar100(sources):
    """cifar-100-matlab.tar.gz, fine labels (100 classes) -> Built."""
    path = sources.fetch('cifar-100-matlab.tar.gz', URL)
    return build(path, 'cifar-100-matlab', ['train.mat'], 'test.mat', 'meta.mat', 'fine_labels', 'fine_label_names')
