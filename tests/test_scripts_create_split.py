"""scripts/create_split.py end to end."""

import json
import os
import pathlib

from libml.data import names as datanames
from libml.data import splits
from libml.data.dataset import DataSet
from libml.data.records import encode_png, write_records
from libml.errors import UserError

import numpy as np
import pytest
from conftest import assert_user_error, run_cli
from test_data_dataset import NCLASS, image_for, index_of, take_images
from test_data_splits import dead_pid, files_under, records, temp_files, temp_name, write_train


def test_create_split_command(ml_data):
    labels = np.arange(200) % NCLASS
    train = write_train(ml_data, labels)
    prefix = ml_data / 'SSL' / 'tiny'
    label_file, unlabel_file, map_file = datanames.split_paths('tiny.1@50', str(ml_data))
    os.makedirs(prefix.parent)  # leftovers of killed runs go, whatever their output; a live writer's stays
    stale = [temp_name(label_file, dead_pid()), temp_name(str(prefix.parent / 'unrelated.tfrecord'), dead_pid())]
    live = temp_name(str(prefix.parent / 'unrelated.tfrecord'), os.getpid())
    for path in stale + [live]:
        pathlib.Path(path).touch()
    run_cli(['scripts/create_split.py', '--seed=1', '--label_split_size=50', prefix, train], ml_data)
    assert temp_files(ml_data) == [os.path.relpath(live, ml_data)]
    os.remove(live)
    expected = splits.make_split(labels, 50, 1)
    images, got = records(label_file)
    assert np.bincount(got).tolist() == [5] * NCLASS
    assert [index_of(x) for x in images] == expected['label'].tolist()
    assert [index_of(x) for x in records(unlabel_file)[0]] == expected['unlabel'].tolist()
    split_map = json.loads(pathlib.Path(map_file).read_text())
    assert split_map['valid_capacity'] == 150 and split_map['label'] == expected['label'].tolist()
    assert split_map['label_counts'] == {str(c): 5 for c in range(NCLASS)}

    before = {p: pathlib.Path(p).read_bytes() for p in (label_file, unlabel_file, map_file)}
    proc = run_cli(
        ['scripts/create_split.py', '--seed=1', '--label_split_size=50', prefix, train], ml_data, check=False
    )
    assert_user_error(proc, 'already exists', '--overwrite')
    assert {p: pathlib.Path(p).read_bytes() for p in before} == before
    assert not [f for f in files_under(ml_data) if f.endswith('.tmp')]


def test_create_split_custom_label_size(ml_data):
    """The README's custom form: labelled images first, then unlabelled ones (-1)."""
    labels = np.r_[np.arange(120) % NCLASS, [-1] * 40]
    train = write_train(ml_data, labels, name='mydataset')
    write_records(datanames.test_path('mydataset', str(ml_data)), [(encode_png(image_for(0)), 0)])
    run_cli(
        [
            './scripts/create_split.py',
            '--seed=1',
            '--label_split_size=100',
            '--label_size=120',
            ml_data / 'SSL' / 'mydataset',
            train,
        ],
        ml_data,
    )
    ds = DataSet.from_name('mydataset.1@100-20')
    images, valid_labels = take_images(ds.eval_valid(64), 100)
    assert len(images) == 20 and np.bincount(valid_labels).tolist() == [2] * NCLASS
    assert all(index_of(x) % NCLASS == y and index_of(x) < 120 for x, y in zip(images, valid_labels))
    assert ds.unlabel_count == 40
    with pytest.raises(UserError, match='exceeds the 20 held-out'):
        DataSet.from_name('mydataset.1@100-21')


def test_create_split_error_leaves_no_file(ml_data):
    write_train(ml_data, np.arange(200) % NCLASS)
    before = files_under(ml_data)
    proc = run_cli(
        [
            'scripts/create_split.py',
            '--seed=2',
            '--label_split_size=300',
            ml_data / 'SSL' / 'tiny',
            ml_data / 'tiny-train.tfrecord',
        ],
        ml_data,
        check=False,
    )
    assert_user_error(proc, 'exceeds the 200 labelled records')
    assert files_under(ml_data) == before


def test_a_split_that_leaves_classes_without_labels_warns(digits):
    proc = run_cli(
        [
            'scripts/create_split.py',
            '--seed=3',
            '--label_split_size=5',
            digits / 'SSL' / 'digits',
            digits / 'digits-train.tfrecord',
        ],
        digits,
    )
    assert 'warning: 5 of the 10 classes get no labelled image' in proc.stderr
