"""mixup.py: the loss on a fixed tiny batch against numpy (docs/algorithms.md#mixup)."""

from libml import maths

import numpy as np
import pytest
import tensorflow as tf
from linear_step import SEED, B, K, run_loss, setup, softmax, xent

import mixup


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
