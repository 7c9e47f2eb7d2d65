"""scripts/demo.py end to end."""

import os
import re

import pytest
from conftest import run_cli


def test_demo_quick_prints_the_table(digits, tmp_path):
    proc = run_cli(['scripts/demo.py', '--quick', f'--train_dir={tmp_path}'], ml_data=digits)
    out = proc.stdout
    assert '| RealMix | 50 |' in out and '| Supervised | 50 |' in out, out
    assert '%|' not in out + proc.stderr  # no tqdm bar ('  0%|    | 0/50') when the output is not a terminal
    assert os.path.exists(digits / 'SSL' / 'digits_aug8.1@50-unlabel.tfrecord')


@pytest.mark.slow
def test_demo_reaches_its_published_accuracy(digits, tmp_path):
    """The real demo (about 10 minutes on 2 cores): RealMix >= 90% and >= 5 points over supervised."""
    out = run_cli(['scripts/demo.py', f'--train_dir={tmp_path}'], ml_data=digits, timeout=3600).stdout
    accuracy = {m: float(a) for m, a in re.findall(r'^\| (RealMix|Supervised) \| 50 \| ([\d.]+) \|', out, re.M)}
    assert accuracy['RealMix'] >= 90, out
    assert accuracy['RealMix'] >= accuracy['Supervised'] + 5, out
