"""Writers of dataset files (issue 22): one writer per output; a dead writer's temporary files are removed by the
next writer in the folder."""

import glob
import signal
import subprocess
import sys

from libml import files
from libml.data import names
from libml.errors import UserError

import pytest
from conftest import ROOT, assert_user_error, run_cli
from guards import temp_files


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


def test_make_aug_copy_lists_only_augmentations_it_takes(digits):
    proc = run_cli(
        ['scripts/make_aug_copy.py', '--aug_dataset=digits.1@50', '--aug_copy=2', '--augment=foo'], digits, check=False
    )
    assert_user_error(proc, '--augment=foo is not an augmentation: choose cifar10, svhn, stl10, color or cutout')
