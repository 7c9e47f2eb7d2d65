"""--eval_ckpt against what training reported (libml/report/evaluation.py)."""

import os
import re

from libml.report import events

import pytest
from conftest import TINY_TRAIN, run_cli
from test_config import DATASET


def test_eval_ckpt_equals_the_accuracy_training_reported(trained, digits, tmp_path):
    _, run_dir, _ = trained
    reported = dict(events.read_scalars(os.path.join(run_dir, 'tf'), 'accuracy_test'))[2048]
    out = run_cli(
        [
            'realmix.py',
            f'--dataset={DATASET}',
            f'--train_dir={tmp_path}',
            f'--eval_ckpt={run_dir}/tf/model.ckpt-0000002048',
        ]
        + TINY_TRAIN,
        ml_data=digits,
    ).stdout
    evaluated = float(re.search(r'ema .*test +([\d.]+)', out).group(1))
    assert evaluated == pytest.approx(reported, abs=0.01)
