"""Shared fixtures: an isolated $ML_DATA per test and the repository root on sys.path."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')


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
