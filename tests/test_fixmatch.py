"""fixmatch.py: the loss on a fixed tiny batch against numpy, and an exact resume after SIGKILL, also of two of
its successors, whose state must resume too (docs/algorithms.md#fixmatch, #flexmatch, #freematch)."""

import glob
import subprocess

import numpy as np
import pytest
import tensorflow as tf
from conftest import ROOT, TINY_TRAIN, assert_same_checkpoints, deterministic_env, kill_and_resume
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


# FixMatch has no state beyond the loop's (tested by test_train_run.py's kill -9 test): slow, 60-90 s.
SIGKILL_SCRIPTS = [pytest.param('fixmatch.py', marks=pytest.mark.slow), 'flexmatch.py', 'freematch.py']


@pytest.mark.parametrize('script', SIGKILL_SCRIPTS)
def test_from_the_shell_resumes_after_sigkill_exactly(digits, tmp_path, script):
    """./<script> killed after its first checkpoint, then restarted, ends with the uninterrupted run's weights
    (and, for an algorithm with state, its state: FlexMatch's per-image labels, FreeMatch's EMAs)."""
    common = [f'./{script}', '--dataset=digits.1@50-250', '--train_kimg=2', '--uratio=1'] + TINY_TRAIN
    if script == 'flexmatch.py':  # a tau the young model reaches: images are recorded from the first steps on
        common.append('--confidence=0.2')
    env = deterministic_env(digits)
    subprocess.run(common + [f'--train_dir={tmp_path / "whole"}'], cwd=ROOT, env=env, check=True, capture_output=True)
    resumed = kill_and_resume(common, tmp_path / 'killed', env)
    [whole] = glob.glob(str(tmp_path / 'whole' / '*' / '*' / 'tf' / 'model.ckpt-0000002048.index'))
    scopes = ('model/', 'ema_model/', 'optimizer/', 'algorithm_state/')
    keys = assert_same_checkpoints(whole[: -len('.index')], resumed, scopes)
    state = [k for k in keys if k.startswith('algorithm_state/')]
    assert len(keys) - len(state) > 20
    assert len(state) == {'fixmatch.py': 0, 'flexmatch.py': 1, 'freematch.py': 3}[script]
    if script == 'flexmatch.py':  # the state the restart must restore is not empty
        [first] = glob.glob(str(tmp_path / 'killed' / '*' / '*' / 'tf' / 'model.ckpt-0000001024.index'))
        assert np.sum(tf.train.load_checkpoint(first[: -len('.index')]).get_tensor(state[0]) >= 0) > 100
