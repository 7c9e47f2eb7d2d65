"""libml's start-up environment: oneDNN's CPU kernels on unless TF_ENABLE_ONEDNN_OPTS says otherwise."""

import os
import subprocess
import sys

import pytest
from conftest import ROOT, assert_user_error, run_cli
from guards import python_env

# Imports libml (as every entry point does before TensorFlow), then spawns a child as the scripts do.
_PROBE = r"""
import os, subprocess, sys
import libml
from tensorflow.python.util import _pywrap_util_port
child = subprocess.run([sys.executable, '-c', 'import os; print(os.environ["TF_ENABLE_ONEDNN_OPTS"])'],
                       capture_output=True, text=True, check=True).stdout.strip()
print(bool(_pywrap_util_port.IsMklEnabled()), child)
"""


@pytest.mark.parametrize('setting, expected', [(None, 'True 1'), ('0', 'False 0')])
def test_onednn_is_on_unless_the_environment_turns_it_off(setting, expected):
    env = {k: v for k, v in os.environ.items() if k != 'TF_ENABLE_ONEDNN_OPTS'}
    if setting is not None:
        env['TF_ENABLE_ONEDNN_OPTS'] = setting
    env.update(PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL='3')
    proc = subprocess.run([sys.executable, '-c', _PROBE], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == expected


def test_a_python_without_tensorflow_gets_one_line_naming_the_fix():
    # -S: no site-packages (a system python3 running ./realmix.py outside the virtual environment).
    proc = subprocess.run([sys.executable, '-S', 'realmix.py', '--help'], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 1 and 'Traceback' not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f'error: tensorflow is not installed for {sys.executable}: run `make venv` and `. .venv/bin/activate` '
        '(or `pip install -r requirements.txt`)'
    ]


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
