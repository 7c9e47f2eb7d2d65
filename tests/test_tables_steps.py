"""The demo's and the tables' steps: a cell's command and its length (libml/tables/steps.py)."""

import os

from libml.errors import UserError
from libml.tables import steps

import pytest

import algorithms

algorithms.load()  # the methods the tables name, registered by their algorithm files


def test_a_table_cell_refuses_a_run_folder_of_another_length(digits, tmp_path):
    flags = ['--dataset=digits.1@50-250', f'--train_dir={tmp_path}', '--seed=1']
    flags += [f for f in steps.QUICK_SCHEDULE if not f.startswith('--train_kimg')]
    first = steps.train('Supervised', flags + ['--train_kimg=1'])
    assert [images for images, _ in first['curve']] == [1024]
    with pytest.raises(UserError) as error:  # resuming would splice two schedules into one cell
        steps.train('Supervised', flags + ['--train_kimg=2'])
    message = str(error.value)
    assert first['run_dir'] in message and '--train_kimg=1, this one asks for 2' in message, message
    # The folder is untouched: the same length is read back, not retrained.
    again = steps.train('Supervised', flags + ['--train_kimg=1'])
    assert again['curve'] == first['curve'] and not os.path.exists(
        os.path.join(first['run_dir'], 'tf', 'model.ckpt-0000002048.index')
    )


def test_a_cells_flag_replaces_the_methods_default_in_the_command():
    merged = steps.merged_flags(['--warmup_kimg=32', '--w_match=75'], ['--seed=2', '--w_match=25'])
    assert merged == ['--warmup_kimg=32', '--seed=2', '--w_match=25']
