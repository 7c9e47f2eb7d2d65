"""Each algorithm's loss on a fixed tiny batch against a numpy computation of docs/algorithms.md, and a tiny
run of each.

The model is a real linear classifier (no batch norm, so interleaving and `update_stats` do not
change its outputs); random draws (VAT's d, MixUp's and ICT's lam and permutation) are inputs the
test draws with the same stateless primitives and seed, then the formula is computed in numpy.
"""

import glob
import os
import signal
import subprocess
import sys
import time

from libml import algorithm, config, maths
from libml.report import events
from libml.train import run

import numpy as np
import pytest
import tensorflow as tf
from conftest import ROOT, TINY_TRAIN

import fixmatch
import ict
import mean_teacher
import mixup
import pi_model
import pseudo_label
import realmix
import vat

K, B = 3, 4
SEED = tf.constant([5, 9], tf.int64)


class Linear(tf.Module):
    """logits = flatten(x) @ w + b."""

    def __init__(self, w, b):
        super().__init__()
        self.w, self.b = tf.Variable(w), tf.Variable(b)

    def __call__(self, x, training=False, update_stats=True):
        return tf.reshape(x, [x.shape[0], -1]) @ self.w + self.b

    def numpy(self, x):
        return np.asarray(x).reshape(len(x), -1) @ self.w.numpy() + self.b.numpy()


def softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def xent(targets, logits):
    """Row-wise cross-entropy of soft targets [N, K] against logits."""
    return -(targets * np.log(softmax(logits))).sum(1)


def setup(uratio=1, views=2):
    rng = np.random.RandomState(0)
    model = Linear(rng.normal(0, 1, (4, K)).astype(np.float32), rng.normal(0, 0.1, K).astype(np.float32))
    ema = Linear(rng.normal(0, 1, (4, K)).astype(np.float32), np.zeros(K, np.float32))
    x = rng.uniform(-1, 1, (B, 2, 2, 1)).astype(np.float32)
    labels = np.array([0, 1, 2, 1])
    u = rng.uniform(-1, 1, (B * uratio, views, 2, 2, 1)).astype(np.float32)
    u_labels = np.array(([0, -1, 2, 2] * uratio)[: B * uratio])
    step = algorithm.Step(model, ema, SEED, tf.constant(0.25), tf.constant(1000, tf.int64), 5000)
    return model, ema, x, labels, u, u_labels, step


def run_loss(cls, step, x, labels, u, u_labels, **settings):
    cfg = config.build(cls, **settings)
    algo = cls(cfg, K)
    loss, stats = algo.loss(step, (tf.constant(x), tf.constant(labels)), (tf.constant(u), tf.constant(u_labels)))
    return float(loss), {k: float(v) for k, v in stats.items()}


def ramp(step, pos=0.4):
    return min(float(step.images_seen) / (pos * step.total_images), 1.0)


def supervised(model, x, labels):
    return xent(np.eye(K)[labels], model.numpy(x)).mean()


@pytest.mark.parametrize(
    'cls, weight, teacher', [(pi_model.PiModel, 10.0, 'model'), (mean_teacher.MeanTeacher, 50.0, 'ema')]
)
def test_pi_model_and_mean_teacher(cls, weight, teacher):
    model, ema, x, labels, u, u_labels, step = setup()
    loss, stats = run_loss(cls, step, x, labels, u, u_labels)
    target = softmax((model if teacher == 'model' else ema).numpy(u[:, 0]))
    consistency = ((softmax(model.numpy(u[:, 1])) - target) ** 2).mean()
    expected = supervised(model, x, labels) + weight * ramp(step) * consistency
    assert stats['consistency'] == pytest.approx(consistency, rel=1e-5)
    assert loss == pytest.approx(expected, rel=1e-5)
    assert stats['weight'] == pytest.approx(weight * 0.5)  # 1000 / (0.4 * 5000)


def test_pseudo_label():
    model, _, x, labels, u, u_labels, step = setup(views=1)
    model.b.assign([4.0, 0.0, 0.0])  # some rows confident about class 0
    loss, stats = run_loss(pseudo_label.PseudoLabel, step, x, labels, u, u_labels, threshold=0.9)
    z = model.numpy(u[:, 0])
    p = softmax(z)
    mask = p.max(1) > 0.9
    assert 0 < mask.sum() < B
    pl = (mask * xent(np.eye(K)[p.argmax(1)], z)).mean()
    assert stats['pseudo_label'] == pytest.approx(pl, rel=1e-5)
    assert stats['mask'] == pytest.approx(mask.mean())
    assert loss == pytest.approx(supervised(model, x, labels) + 1.0 * ramp(step) * pl, rel=1e-5)


def test_ict():
    model, ema, x, labels, u, u_labels, step = setup(views=1)
    loss, stats = run_loss(ict.ICT, step, x, labels, u, u_labels)
    lam = maths.beta_lambda(SEED, B, 0.5).numpy()[:, None]  # the draw the algorithm makes with the step seed
    v = u[:, 0].reshape(B, -1)
    mixed = lam * v + (1 - lam) * v[::-1]
    t = softmax(ema.numpy(u[:, 0]))
    target = lam * t + (1 - lam) * t[::-1]
    consistency = ((softmax(model.numpy(mixed)) - target) ** 2).mean()
    assert stats['consistency'] == pytest.approx(consistency, rel=1e-5)
    assert loss == pytest.approx(supervised(model, x, labels) + 50 * ramp(step) * consistency, rel=1e-5)


def test_mixup():
    model, _, x, labels, u, u_labels, step = setup(views=1)
    loss, stats = run_loss(mixup.MixUp, step, x, labels, u, u_labels)
    seed_x, seed_u = tf.unstack(tf.random.experimental.stateless_split(SEED, 2))

    def mix(rows, targets, seed):
        seeds = tf.random.experimental.stateless_split(seed, 2)
        perm = np.argsort(tf.random.stateless_uniform([B], seeds[0]).numpy(), kind='stable')
        lam = maths.beta_lambda(seeds[1], B, 0.5).numpy()[:, None]
        rows = rows.reshape(B, -1)
        return lam * rows + (1 - lam) * rows[perm], lam * targets + (1 - lam) * targets[perm]

    mx, tx = mix(x, np.eye(K)[labels], seed_x)
    mu, tu = mix(u[:, 0], softmax(model.numpy(u[:, 0])), seed_u)
    assert stats['xe'] == pytest.approx(xent(tx, model.numpy(mx)).mean(), rel=1e-5)
    assert stats['xeu'] == pytest.approx(xent(tu, model.numpy(mu)).mean(), rel=1e-5)
    assert loss == pytest.approx(stats['xe'] + stats['xeu'], rel=1e-6)


def test_vat():
    model, _, x, labels, u, u_labels, step = setup(views=1)
    loss, stats = run_loss(vat.VAT, step, x, labels, u, u_labels)
    v = u[:, 0].reshape(B, -1).astype(np.float64)
    w = model.w.numpy().astype(np.float64)
    z = v @ w + model.b.numpy()

    def normalise(d):
        d = d / np.abs(d).max(1, keepdims=True)
        return d / np.sqrt(1e-6 + (d**2).sum(1, keepdims=True))

    d = 1e-6 * normalise(tf.random.stateless_normal([B, 2, 2, 1], SEED).numpy().reshape(B, -1).astype(np.float64))
    # g = grad_d mean KL(p(z) || p(z + d W)) = W (p(z + d W) - p(z)) / B for a linear model
    g = (softmax(z + d @ w) - softmax(z)) @ w.T / B
    r = 6.0 * normalise(g)
    p_student, p_teacher = softmax(z + r @ w), softmax(z)
    kl = (p_student * (np.log(p_student) - np.log(p_teacher))).sum(1).mean()
    entropy = -(softmax(z) * np.log(softmax(z))).sum(1).mean()
    # xi = 1e-6 (docs/algorithms.md#vat) moves u + d and the logits z + dW by a few float32 ulps (the softmax
    # difference is taken in float64, but u + d and the logits are rounded to float32): the direction is the
    # float64 one to within a few degrees, so the KL agrees to a few percent (0.911 vs 0.898 here),
    # while a wrong sign, norm or teacher/student order would be off by far more.
    assert stats['vat'] == pytest.approx(kl, rel=5e-2)
    assert stats['entmin'] == pytest.approx(entropy, rel=1e-5)
    expected = supervised(model, x, labels) + 0.06 * entropy
    assert loss - 0.3 * ramp(step) * stats['vat'] == pytest.approx(expected, rel=1e-5)
    reversed_kl = (p_teacher * (np.log(p_teacher) - np.log(p_student))).sum(1).mean()
    assert abs(reversed_kl - kl) > 0.1 * kl  # the order of the KL's arguments is visible at this tolerance


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


def test_mixmatch_step_of_realmix():
    model, _, x, labels, u, u_labels, step = setup()
    loss, stats = run_loss(
        realmix.RealMix,
        step,
        x,
        labels,
        u,
        u_labels,
        tsa='none',
        percent_mask=-1.0,
        w_match=75.0,
        warmup_kimg=4,
        temperature=0.5,
    )
    p = (softmax(model.numpy(u[:, 0])) + softmax(model.numpy(u[:, 1]))) / 2
    guess = p**2 / (p**2).sum(1, keepdims=True)
    rows = np.concatenate([x, u[:, 0], u[:, 1]]).reshape(3 * B, -1)
    targets = np.concatenate([np.eye(K)[labels], guess, guess])
    seeds = tf.random.experimental.stateless_split(SEED, 2)
    perm = np.argsort(tf.random.stateless_uniform([3 * B], seeds[0]).numpy(), kind='stable')
    lam = maths.beta_lambda(seeds[1], 3 * B, 0.75).numpy()[:, None]
    mixed, mixed_t = lam * rows + (1 - lam) * rows[perm], lam * targets + (1 - lam) * targets[perm]
    logits = model.numpy(mixed)
    xe = xent(mixed_t[:B], logits[:B]).mean()
    l2u = ((mixed_t[B:] - softmax(logits[B:])) ** 2).mean()
    w = 75.0 * min(1000 / (4 * 1024), 1.0)
    assert stats['xe'] == pytest.approx(xe, rel=1e-5)
    assert stats['l2u'] == pytest.approx(l2u, rel=1e-5)
    assert loss == pytest.approx(xe + w * l2u, rel=1e-5)


TINY_RUN = dict(
    train_kimg=1,
    report_kimg=1,
    save_kimg=1,
    filters=8,
    repeat=1,
    batch=16,
    augment='svhn',
    uratio=2,
    dataset='digits.1@50-250',
    strategy='none',
)


@pytest.mark.parametrize(
    'cls', [mixup.MixUp, ict.ICT, mean_teacher.MeanTeacher, pi_model.PiModel, pseudo_label.PseudoLabel, vat.VAT]
)
def test_each_algorithm_trains_reports_and_saves(digits, tmp_path, cls, capsys):
    cfg = config.build(cls, train_dir=str(tmp_path), **TINY_RUN)
    trainer = run.train(cfg, cls)
    assert 'kimg     1  accuracy train' in capsys.readouterr().out
    run_dir = config.run_dir(cfg, cls)
    assert os.path.basename(run_dir).startswith(cls.name + '_') and 'uratio2' in run_dir
    assert os.path.exists(os.path.join(run_dir, 'tf', 'model.ckpt-0000001024.index'))
    for tag in cls.loss_names:
        assert events.read_scalars(os.path.join(run_dir, 'tf'), f'losses/{tag}'), tag
    assert int(trainer.images_seen.numpy()) == 1024


def test_fixmatch_from_the_shell_resumes_after_sigkill_exactly(digits, tmp_path):
    """./fixmatch.py killed after its first checkpoint, then restarted, ends with the uninterrupted run's weights."""
    common = ['./fixmatch.py', '--dataset=digits.1@50-250', '--train_kimg=2', '--uratio=1'] + TINY_TRAIN
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
    for key in keys:
        np.testing.assert_allclose(a.get_tensor(key), b.get_tensor(key), rtol=1e-4, atol=1e-6, err_msg=key)
