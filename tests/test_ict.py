"""ict.py: the loss on a fixed tiny batch against numpy, and its pictures (docs/algorithms.md#ict)."""

from libml import config, maths

import numpy as np
import pytest
import tensorflow as tf
from linear_step import SEED, B, ramp, run_loss, setup, softmax, supervised
from test_report_reporter import partner_weights

import ict


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


def test_ict_pictures_mix_each_unlabelled_row_with_its_mirror():
    from ict import ICT

    algo = ICT(config.build(ICT), 10)
    u = np.random.RandomState(1).uniform(-1, 1, (5, 1, 4, 4, 3)).astype(np.float32)
    step = type('Step', (), {'seed': tf.constant([0, 1], tf.int64)})
    shown = algo.pictures(step, (tf.zeros([2, 4, 4, 3]), tf.zeros([2], tf.int64)), (tf.constant(u), tf.zeros([5])))
    assert list(shown) == ['labelled', 'unlabelled_weak', 'mixed_unlabelled']
    pairs = partner_weights(np.asarray(shown['mixed_unlabelled']), u[:, 0])
    assert [j for j, _ in pairs][:2] + [j for j, _ in pairs][3:] == [4, 3, 1, 0]  # row i with row 4 - i
