"""scripts/inspect_dataset.py."""

import numpy as np
from conftest import run_cli
from test_data_splits import write_train


def test_inspect_dataset(ml_data):
    path = write_train(ml_data, np.r_[np.arange(30) % 3, [-1] * 5])
    out = run_cli(['scripts/inspect_dataset.py', path], ml_data).stdout
    assert 'records: 35' in out
    assert 'per class: -1: 5, 0: 10, 1: 10, 2: 10' in out
    assert 'label range: -1..2' in out
    assert '16x16x1: 35' in out and 'channels: 1' in out
