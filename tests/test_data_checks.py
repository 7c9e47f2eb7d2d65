"""What a dataset must satisfy (libml/data/checks.py): the test file is no training file, an input is given once."""

import glob
import os

from libml.data import checks
from libml.data.dataset import DataSet
from libml.errors import UserError

import pytest
from conftest import TINY_TRAIN, assert_user_error, run_cli


def test_an_input_given_twice_is_refused(tmp_path):
    first = tmp_path / 'train.tfrecord'
    first.write_bytes(b'')
    os.symlink(first, tmp_path / 'link.tfrecord')
    with pytest.raises(UserError, match='are the same file: give each input once'):
        checks.check_distinct_files([str(first), str(tmp_path / 'other.tfrecord'), str(tmp_path / 'link.tfrecord')])
    checks.check_distinct_files([str(first), str(tmp_path / 'other.tfrecord')])


def test_the_test_file_as_training_data_is_refused(digits, tmp_path):
    test_file = str(digits / 'digits-test.tfrecord')
    os.symlink(test_file, tmp_path / 'link.tfrecord')
    for source in (test_file, str(tmp_path / 'link.tfrecord')):
        with pytest.raises(UserError, match=f'{source} is the test file {test_file} itself'):
            DataSet.from_records('x-10', source, test_file, 10)
    proc = run_cli(
        [
            'fully_supervised/fs_baseline.py',
            '--dataset=x-10',
            '--train_record=digits-test.tfrecord',
            '--test_record=digits-test.tfrecord',
            f'--train_dir={tmp_path / "exp"}',
        ]
        + TINY_TRAIN,
        digits,
        check=False,
    )
    assert_user_error(proc, 'is the test file', 'itself')
    assert not os.path.exists(tmp_path / 'exp')
    proc = run_cli(
        ['scripts/create_split.py', '--seed=2', '--label_split_size=50', digits / 'SSL' / 'digits', test_file],
        digits,
        check=False,
    )
    assert_user_error(proc, 'is the test file', 'itself')
    assert not glob.glob(str(digits / 'SSL' / 'digits.2@50*'))
