"""Messages (issue 22): one line from us, no multi-line notices from TensorFlow."""

import subprocess
import sys

from conftest import ROOT, assert_user_error, run_cli
from guards import python_env


def test_tensorflow_adds_no_multi_line_warnings(trained, digits, tmp_path):
    _, run_dir, _ = trained
    wrong = run_cli(
        ['realmix.py', f'--eval_ckpt={run_dir}/tf/model.ckpt-0000002048', '--filters=16'], digits, check=False
    )
    assert_user_error(wrong, 'does not fit this model')
    assert len(wrong.stderr.strip().splitlines()) == 1  # not TensorFlow's list of unrestored values
    code = (
        'from libml.data.dataset import DataSet\n'
        f'ds = DataSet.from_records("x-20", {str(digits / "digits-train.tfrecord")!r}, '
        f'{str(digits / "digits-test.tfrecord")!r}, 20)\n'
        'print(sum(len(y) for _, y in ds.eval_labelled(512)))\n'
    )
    proc = subprocess.run(
        [sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True, env=python_env(digits)
    )
    assert proc.stdout.strip() == '1277' and proc.stderr == '', proc.stderr  # a filtered part: no AutoGraph notice


def test_a_split_that_leaves_classes_without_labels_warns(digits):
    proc = run_cli(
        [
            'scripts/create_split.py',
            '--seed=3',
            '--label_split_size=5',
            digits / 'SSL' / 'digits',
            digits / 'digits-train.tfrecord',
        ],
        digits,
    )
    assert 'warning: 5 of the 10 classes get no labelled image' in proc.stderr
