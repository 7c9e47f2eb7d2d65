"""Atomic outputs: a full disk or an unwritable folder is one line naming the output (libml/files.py)."""

import os
import pathlib

from libml.errors import UserError
from libml.files import atomic_output, atomic_outputs

import numpy as np
import pytest
import tensorflow as tf
from conftest import assert_user_error, run_cli, tmpfs
from test_data_dataset import NCLASS
from test_data_splits import write_train


def test_full_disk_names_the_output(tmp_path):
    with tmpfs(tmp_path / 'small', 'size=32k') as small:
        # TensorFlow's writer and Python's: the same one line, naming the output, no temporary file left
        def tensorflow_writer(tmp):
            with tf.io.TFRecordWriter(tmp) as writer:
                for _ in range(100):
                    writer.write(b'x' * 1000)

        for write in (tensorflow_writer, lambda tmp: pathlib.Path(tmp).write_bytes(b'x' * 100_000)):
            message = f'no space left on the device of {small} while writing {small}/out'
            with pytest.raises(UserError, match=message), atomic_output(str(small / 'out')) as tmp:
                write(tmp)
            assert os.listdir(small) == []


def test_unwritable_folder_names_the_folder(ml_data, tmp_path):
    train = write_train(ml_data, np.arange(100) % NCLASS)
    (tmp_path / 'a_file').write_text('')
    message = f'cannot write .*: {tmp_path}/a_file is a file, not a folder'
    with (
        pytest.raises(UserError, match=message),
        atomic_outputs([str(tmp_path / 'ok'), str(tmp_path / 'a_file/out')]),
    ):
        pass
    assert sorted(os.listdir(tmp_path)) == ['a_file', 'ml_data']
    with tmpfs(tmp_path / 'locked', 'size=1m,ro') as locked:
        with pytest.raises(OSError, match='Read-only file system'):
            (locked / 'probe').touch()  # refused even to root, unlike a chmod
        proc = run_cli(
            ['scripts/create_split.py', '--seed=1', '--label_split_size=50', locked / 'tiny', train],
            ml_data,
            check=False,
        )
    assert_user_error(
        proc,
        f'cannot write {locked}/tiny.1@50-label.tfrecord: the folder {locked} is not writable',
        'Read-only file system',
    )
    assert '.tmp' not in proc.stderr
