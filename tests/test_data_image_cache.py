"""Decoded images cached beside a large record file (libml/data/image_cache.py)."""

import glob
import os
import subprocess

from libml.data import image_cache
from libml.data import names as datanames
from libml.data.dataset import DataSet

import numpy as np
from conftest import tmpfs
from test_data_dataset import (
    GOLDEN,
    build_dataset,
    digest,
    take_images,
)


def test_decoded_images_are_cached_on_disk_for_later_starts(tiny, ml_data, monkeypatch):
    monkeypatch.setattr(image_cache, 'MIN_RECORDS', 1)
    unlabel = datanames.split_paths('tiny.1@50', str(ml_data))[1]

    def stream():
        ds = DataSet.from_name('tiny.1@50-100', augment='cifar10')
        return take_images(ds.train_unlabelled(8, ('weak', 'weak'), seed=5, start=93), 24)[0]

    first = stream()  # decodes, writes the cache
    assert digest(first) == GOLDEN['unlabelled', 93][0]
    (cache,) = glob.glob(unlabel + '.*.pixels')
    assert not [n for n in os.listdir(os.path.dirname(unlabel)) if n.endswith('.tmp')]
    np.testing.assert_array_equal(stream(), first)  # read back
    with open(cache, 'r+b') as f:  # a later start reads the cache: white pixels show through
        f.seek(image_cache.HEADER)
        f.write(b'\xff' * (os.path.getsize(cache) - image_cache.HEADER))
    assert (stream() == 1).all()
    os.utime(unlabel, ns=(1, 1))  # the record file changed: the stale cache is decoded again
    np.testing.assert_array_equal(stream(), first)
    assert glob.glob(unlabel + '.*.pixels') == [cache] and (stream() == first).all()


def test_decoded_images_are_not_cached_in_a_read_only_folder(ml_data, monkeypatch):
    monkeypatch.setattr(image_cache, 'MIN_RECORDS', 1)
    with tmpfs(ml_data / 'SSL', 'size=4m') as ssl:
        build_dataset(str(ml_data), n_train=220, n_unlabelled=20)
        subprocess.run(['mount', '-o', 'remount,ro', str(ssl)], check=True)
        ds = DataSet.from_name('tiny.1@50-100', augment='cifar10')
        images, _ = take_images(ds.train_unlabelled(8, ('weak', 'weak'), seed=5, start=93), 24)
        assert digest(images) == GOLDEN['unlabelled', 93][0]
        assert not [n for n in os.listdir(ssl) if not n.endswith(('.tfrecord', '.json'))]
