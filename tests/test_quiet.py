"""libml's start-up environment: oneDNN's CPU kernels on unless TF_ENABLE_ONEDNN_OPTS says otherwise."""

import os
import subprocess
import sys

import pytest
from conftest import ROOT

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
