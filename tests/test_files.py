"""Atomic outputs: a full disk or an unwritable folder is one line naming the output (libml/files.py)."""

import glob
import os
import pathlib
import signal
import subprocess
import sys

from libml import config, files
from libml.data import names
from libml.errors import UserError
from libml.files import atomic_output, atomic_outputs
from libml.train import checkpoints

import numpy as np
import pytest
import tensorflow as tf
from conftest import ROOT, assert_user_error, run_cli, tmpfs
from guards import temp_files
from test_data_dataset import NCLASS
from test_data_splits import write_train

import realmix


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


def test_file_names_tensorflow_cannot_open_are_refused_before_anything_is_written(tmp_path, monkeypatch):
    not_utf8 = os.path.join(str(tmp_path), os.fsdecode(b'exp\xe9'))
    with pytest.raises(UserError, match='--train_dir=.*: must be a UTF-8 path'):
        config.build(realmix.RealMix, train_dir=not_utf8)
    monkeypatch.setenv('ML_DATA', os.fsdecode(os.path.join(os.fsencode(str(tmp_path)), b'data\xe9')))
    with pytest.raises(UserError, match=r'\$ML_DATA=.*: TensorFlow opens only files whose names are UTF-8'):
        names.data_dir()
    os.makedirs(os.path.join(not_utf8, 'tf'))
    with pytest.raises(UserError, match='checkpoint=.*: TensorFlow opens only'):
        checkpoints.normalise(not_utf8)


def hold_output(path):
    """A live process writing `path` (inside files.atomic_output), until its stdin closes; it prints its pid."""
    code = (
        'import sys\nfrom libml import files\n'
        f'with files.atomic_output({str(path)!r}) as tmp:\n    print(flush=True)\n    sys.stdin.read()\n'
    )
    proc = subprocess.Popen([sys.executable, '-c', code], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    proc.stdout.readline()  # its temporary file exists
    return proc


def test_one_writer_per_output_and_dead_writers_files_are_cleaned(digits):
    unlabel_out = names.split_paths('digits_aug3.1@50', str(digits))[1]
    writer = hold_output(unlabel_out)
    proc = run_cli(
        ['scripts/make_aug_copy.py', '--aug_dataset=digits.1@50', '--aug_copy=3', '--augment=svhn'], digits, check=False
    )
    assert_user_error(proc, f'{unlabel_out} is being written by pid {writer.pid} now')
    assert proc.stdout == '' and not glob.glob(str(digits / 'SSL' / 'digits_aug3*'))  # no plan printed, no file
    with pytest.raises(UserError, match=f'is being written by pid {writer.pid}'):  # any writer, the same rule
        files.write_json(unlabel_out, {})
    writer.send_signal(signal.SIGKILL)  # killed -9: its temporary file stays ...
    writer.wait()
    assert len(temp_files(digits / 'SSL')) == 1
    files.write_json(str(digits / 'SSL' / 'another.json'), {})  # ... until the next writer in that folder
    assert temp_files(digits / 'SSL') == []
