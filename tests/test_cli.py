"""An algorithm script's command line (libml/cli.py)."""

import os

from conftest import run_cli
from test_config import DATASET


def test_a_bad_flag_is_one_line_before_anything_is_written(digits, tmp_path):
    proc = run_cli(
        ['realmix.py', f'--dataset={DATASET}', f'--train_dir={tmp_path / "exp"}', '--ema=1.5'],
        ml_data=digits,
        check=False,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == ['error: --ema=1.5: must be in [0, 1)']
    assert not os.path.exists(tmp_path / 'exp')
