"""Class filtering: kept records, new labels, output paths, flags (libml/data/filtering.py)."""

from libml.data import filtering
from libml.errors import UserError

import numpy as np
import pytest


def test_relabel_and_heldout_first():
    labels = np.array([2, 0, 5, 3, 9, 2, 0, 5])
    kept, new = filtering.relabel(labels, [0, 2, 5])
    assert kept.tolist() == [0, 1, 2, 5, 6, 7] and new.tolist() == [2, 0, 5, 2, 0, 5]
    kept, new = filtering.relabel(labels, [0, 2, 5], label_order=[5, 2, 3])
    assert new.tolist() == [1, -1, 0, 1, -1, 0]
    order, capacity = filtering.heldout_first(kept, new, valid_capacity=4)
    assert kept[order].tolist() == [0, 2, 1, 5, 6, 7] and capacity == 2


def test_describe_record_file(tmp_path):
    assert filtering.describe_record_file(tmp_path / 'SSL' / 'cifar6_m0.1@250-unlabel.tfrecord') == {
        'root': str(tmp_path),
        'name': 'cifar6_m0',
        'part': 'unlabel',
        'stem': 'cifar6_m0.1@250',
    }
    assert filtering.describe_record_file(tmp_path / 'cifar6-test.tfrecord') == {
        'root': str(tmp_path),
        'name': 'cifar6',
        'part': 'test',
        'stem': None,
    }
    assert filtering.describe_record_file(tmp_path / 'odd.name.tfrecord') is None


def test_filter_flags():
    assert filtering.parse_filter_lists('2,3,-1') == ([2, 3, -1], None)
    assert filtering.parse_filter_lists('2,3', '3,2,9') == ([2, 3], [3, 2, 9])
    for args, message in [
        (('2,x',), "--class_filter='2,x'"),
        (('2', '2,2'), 'lists a class twice'),
        (('2', '-1,2'), 'labels >= 0'),
        (('-2',), 'labels >= 0'),
        (('',), 'is empty'),
    ]:
        with pytest.raises(UserError, match=message):
            filtering.parse_filter_lists(*args)
    assert filtering.filter_output_path('/d/SSL/a.1@5-label.tfrecord', 'b.1@5-label') == '/d/SSL/b.1@5-label.tfrecord'
    assert filtering.filter_output_path('/d/a-test.tfrecord', '/e/f/b.tfrecord') == '/e/f/b.tfrecord'
    assert filtering.filter_output_path('/d/a-test.tfrecord', 'e/b') == 'e/b.tfrecord'
