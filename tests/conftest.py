"""Shared fixtures: an isolated $ML_DATA per test and the repository root on sys.path."""

import os
import subprocess
import sys

import pytest
from absl import flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
# Tests that use the library in-process read flag defaults; set them with absl's flagsaver
# (monkeypatch would delete a flag on undo when FLAGS is unparsed).
if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()


@pytest.fixture
def ml_data(tmp_path, monkeypatch):
    """A fresh, empty $ML_DATA directory for one test."""
    root = tmp_path / 'ml_data'
    root.mkdir()
    monkeypatch.setenv('ML_DATA', str(root))
    return root


def run_cli(args, ml_data=None, check=True, timeout=600, cwd=ROOT):
    """Runs a repository command line (`['scripts/x.py', '--flag']`) in a subprocess.

    Returns the CompletedProcess (text output). With `check`, a non-zero exit fails the test
    and shows the output.
    """
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL='3', CUDA_VISIBLE_DEVICES='')
    if ml_data is not None:
        env['ML_DATA'] = str(ml_data)
    proc = subprocess.run([sys.executable] + [str(a) for a in args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f'{args} exited {proc.returncode}\nstdout:\n{proc.stdout}\n'
                             f'stderr:\n{proc.stderr}')
    return proc


@pytest.fixture(scope='session')
def digits_source(tmp_path_factory):
    """A read-only $ML_DATA built by the real commands: digits and the split digits.1@50."""
    root = tmp_path_factory.mktemp('digits_ml_data')
    run_cli(['scripts/create_datasets.py', 'digits'], ml_data=root)
    run_cli(['scripts/create_split.py', '--seed=1', '--label_split_size=50', root / 'SSL' / 'digits',
             root / 'digits-train.tfrecord'], ml_data=root)
    return root


@pytest.fixture
def digits(digits_source, tmp_path, monkeypatch):
    """A private, writable copy of `digits_source`, exported as $ML_DATA."""
    import shutil
    root = tmp_path / 'ml_data'
    shutil.copytree(digits_source, root)
    monkeypatch.setenv('ML_DATA', str(root))
    return root


# Flags for a training run that takes seconds: a tiny WRN, 16-image batches, 1 kimg reports.
TINY_TRAIN = ['--filters=8', '--repeat=1', '--batch=16', '--report_kimg=1', '--save_kimg=1',
              '--augment=svhn', '--eval_batch=512']
