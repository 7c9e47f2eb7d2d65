"""filter_dataset.py end to end."""

import json
import os
import pathlib

from libml.data import names as datanames
from libml.data.dataset import DataSet
from libml.errors import UserError

import numpy as np
import pytest
from conftest import assert_user_error, run_cli
from test_data_dataset import NCLASS, build_dataset, index_of, take_images
from test_data_splits import files_under, records


def test_out_of_distribution_workflow(ml_data):
    """The README's mismatch recipe on a 10-class split, renumbered to a 6-class dataset."""
    split = build_dataset(str(ml_data), n_train=200, size=60)  # 140 held-out labelled records
    root, ssl = ml_data, ml_data / 'SSL'
    pathlib.Path(datanames.class_mapping_path('tiny', str(root))).write_text(
        json.dumps({str(i): f'c{i}' for i in range(NCLASS)})
    )
    order = '--label_order=2,3,4,5,6,7'
    run_cli(
        [
            'filter_dataset.py',
            '--class_filter=2,3,4,5,6,7',
            order,
            f'--filter_dataset={ssl}/tiny.1@60-label.tfrecord',
            f'--save_name={ssl}/tiny6_mm25.1@60-label.tfrecord',
        ],
        ml_data,
    )
    run_cli(
        [
            './filter_dataset.py',
            '--class_filter=0,5,6,7',
            order,
            f'--filter_dataset={ssl}/tiny.1@60-unlabel.tfrecord',
            f'--save_name={ssl}/tiny6_mm25.1@60-unlabel.tfrecord',
        ],
        ml_data,
    )
    run_cli(
        [
            'filter_dataset.py',
            '--class_filter=2,3,4,5,6,7',
            order,
            f'--filter_dataset={root}/tiny-test.tfrecord',
            '--save_name=tiny6_mm25-test',
        ],
        ml_data,
    )

    images, labels = records(ssl / 'tiny6_mm25.1@60-unlabel.tfrecord')
    original = np.array([index_of(x) % NCLASS for x in images])
    assert sorted(set(original.tolist())) == [0, 5, 6, 7] and len(labels) == 56
    assert labels.tolist() == [{5: 3, 6: 4, 7: 5}.get(c, -1) for c in original]
    split_map = json.loads(pathlib.Path(ssl / 'tiny6_mm25.1@60-map.json').read_text())
    assert split_map['valid_capacity'] == 42  # 14 held-out images each of classes 5, 6 and 7
    assert split_map['label'] == [i for i in split['label'].tolist() if i % NCLASS in range(2, 8)]
    names = json.loads(pathlib.Path(root / 'tiny6_mm25_class_mappings.json').read_text())
    assert names == {str(i): f'c{i + 2}' for i in range(6)}
    assert os.path.exists(root / 'tiny6_mm25-test-map.json')

    ds = DataSet.from_name('tiny6_mm25.1@60-42', augment='svhn')
    assert ds.nclass == 6 and ds.class_names == ['c2', 'c3', 'c4', 'c5', 'c6', 'c7']
    valid, valid_labels = take_images(ds.eval_valid(64), 1000)
    assert len(valid) == 42 and all(index_of(x) % NCLASS == y + 2 for x, y in zip(valid, valid_labels))
    train, train_labels = take_images(ds.train_labelled(6, seed=1), 36)
    assert all(index_of(x) % NCLASS == y + 2 for x, y in zip(train, train_labels))
    test, test_labels = take_images(ds.eval_test(64), 1000)
    assert len(test) == 24 and all(index_of(x) % NCLASS == y + 2 for x, y in zip(test, test_labels))
    assert ds.unlabel_count == 14
    with pytest.raises(UserError, match='exceeds the 42 held-out'):
        DataSet.from_name('tiny6_mm25.1@60-43')


def test_filter_plain_file_to_a_path(ml_data, tmp_path):
    build_dataset(str(ml_data), n_train=100, n_unlabelled=20)
    out = tmp_path / 'elsewhere' / 'small'
    run_cli(
        [
            'filter_dataset.py',
            '--class_filter=1,3,-1',
            f'--filter_dataset={ml_data}/tiny-train.tfrecord',
            f'--save_name={out}',
        ],
        ml_data,
    )
    images, labels = records(str(out) + '.tfrecord')
    kept = [i for i in range(100) if i >= 80 or i % NCLASS in (1, 3)]
    assert [index_of(x) for x in images] == kept
    assert labels.tolist() == [-1 if i >= 80 else i % NCLASS for i in kept]
    assert json.loads(pathlib.Path(str(out) + '-map.json').read_text())['kept'] == kept


def test_filter_error_leaves_no_file(ml_data):
    build_dataset(str(ml_data), n_train=60)
    before = files_under(ml_data)
    proc = run_cli(
        [
            'filter_dataset.py',
            f'--filter_dataset={ml_data}/tiny-test.tfrecord',
            '--class_filter=12,13',
            '--save_name=out',
        ],
        ml_data,
        check=False,
    )
    assert_user_error(proc, 'holds no record with a label in 12,13')
    assert files_under(ml_data) == before


def test_filter_dataset_never_writes_over_its_input_even_through_a_link(digits, tmp_path):
    test_file = digits / 'digits-test.tfrecord'
    before = test_file.read_bytes()
    os.symlink(test_file, tmp_path / 'link.tfrecord')
    proc = run_cli(
        [
            'filter_dataset.py',
            '--class_filter=1,2',
            f'--filter_dataset={tmp_path / "link.tfrecord"}',
            f'--save_name={test_file}',
            '--overwrite',
        ],
        digits,
        check=False,
    )
    assert_user_error(proc, 'would replace the input file')
    assert test_file.read_bytes() == before
