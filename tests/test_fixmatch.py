"""fixmatch.py: the loss on a fixed tiny batch against numpy, and an exact resume after SIGKILL, also of two of
its successors, whose state must resume too (docs/algorithms.md#fixmatch, #flexmatch, #freematch)."""

import glob
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
from conftest import ROOT, TINY_TRAIN
from linear_step import B, K, run_loss, setup, softmax, supervised, xent

import fixmatch


def test_fixmatch():
    model, _, x, labels, u, u_labels, step = setup(uratio=2)
    model.b.assign([3.0, 0.0, -1.0])
    loss, stats = run_loss(fixmatch.FixMatch, step, x, labels, u, u_labels, uratio=2, confidence=0.8)
    q = softmax(model.numpy(u[:, 0]))
    mask = q.max(1) >= 0.8
    assert 0 < mask.sum() < 2 * B
    xeu = (mask * xent(np.eye(K)[q.argmax(1)], model.numpy(u[:, 1]))).mean()
    assert stats['xeu'] == pytest.approx(xeu, rel=1e-5)
    assert stats['mask'] == pytest.approx(mask.mean())
    known = u_labels >= 0
    assert stats['label_accuracy'] == pytest.approx((q.argmax(1) == u_labels)[known].mean())
    assert loss == pytest.approx(supervised(model, x, labels) + xeu, rel=1e-5)


@pytest.mark.parametrize('script', ['fixmatch.py', 'flexmatch.py', 'freematch.py'])
def test_from_the_shell_resumes_after_sigkill_exactly(digits, tmp_path, script):
    """./<script> killed after its first checkpoint, then restarted, ends with the uninterrupted run's weights
    (and, for an algorithm with state, its state: FlexMatch's per-image labels, FreeMatch's EMAs)."""
    common = [f'./{script}', '--dataset=digits.1@50-250', '--train_kimg=2', '--uratio=1'] + TINY_TRAIN
    if script == 'flexmatch.py':  # a tau the young model reaches: images are recorded from the first steps on
        common.append('--confidence=0.2')
    env = dict(os.environ, ML_DATA=str(digits), CUDA_VISIBLE_DEVICES='', TF_DETERMINISTIC_OPS='1')
    env['PATH'] = os.path.dirname(sys.executable) + os.pathsep + env['PATH']  # `#!/usr/bin/env python3` finds the venv
    subprocess.run(common + [f'--train_dir={tmp_path / "whole"}'], cwd=ROOT, env=env, check=True, capture_output=True)
    proc = subprocess.Popen(
        common + [f'--train_dir={tmp_path / "killed"}'],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    pattern = str(tmp_path / 'killed' / '*' / '*' / 'tf' / 'model.ckpt-0000001024.index')
    deadline = time.time() + 300
    while not glob.glob(pattern) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert glob.glob(pattern) and not glob.glob(pattern.replace('1024', '2048'))
    out = subprocess.run(
        common + [f'--train_dir={tmp_path / "killed"}'], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0 and 'Resuming from' in out.stdout, out.stderr
    [whole] = glob.glob(str(tmp_path / 'whole' / '*' / '*' / 'tf' / 'model.ckpt-0000002048.index'))
    [resumed] = glob.glob(pattern.replace('1024', '2048'))
    whole, resumed = whole[: -len('.index')], resumed[: -len('.index')]
    a, b = tf.train.load_checkpoint(whole), tf.train.load_checkpoint(resumed)
    keys = [k for k in a.get_variable_to_shape_map() if k.startswith(('model/', 'ema_model/', 'optimizer/'))]
    assert len(keys) > 20
    state = [k for k in a.get_variable_to_shape_map() if k.startswith('algorithm_state/')]
    assert len(state) == {'fixmatch.py': 0, 'flexmatch.py': 1, 'freematch.py': 3}[script]
    if script == 'flexmatch.py':  # the state the restart must restore is not empty
        first = tf.train.load_checkpoint(glob.glob(pattern)[0][: -len('.index')])
        assert np.sum(first.get_tensor(state[0]) >= 0) > 100
    for key in keys + state:
        np.testing.assert_allclose(a.get_tensor(key), b.get_tensor(key), rtol=1e-4, atol=1e-6, err_msg=key)
