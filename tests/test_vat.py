"""vat.py: the loss on a fixed tiny batch against numpy (docs/algorithms.md#vat)."""

import numpy as np
import pytest
import tensorflow as tf
from linear_step import SEED, B, ramp, run_loss, setup, softmax, supervised

import vat


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
    kl = (p_teacher * (np.log(p_teacher) - np.log(p_student))).sum(1).mean()  # the paper's order: fixed first
    entropy = -(softmax(z) * np.log(softmax(z))).sum(1).mean()
    # xi = 1e-6 (docs/algorithms.md#vat) moves u + d and the logits z + dW by a few float32 ulps (the softmax
    # difference is taken in float64, but u + d and the logits are rounded to float32): the direction is the
    # float64 one to within a few degrees, so the KL agrees to a few percent (9.428 vs 9.415 here; 0.898 the other way),
    # while a wrong sign, norm or teacher/student order would be off by far more.
    assert stats['vat'] == pytest.approx(kl, rel=5e-2)
    assert stats['entmin'] == pytest.approx(entropy, rel=1e-5)
    expected = supervised(model, x, labels) + 0.06 * entropy
    assert loss - 0.3 * ramp(step) * stats['vat'] == pytest.approx(expected, rel=1e-5)
    reversed_kl = (p_student * (np.log(p_student) - np.log(p_teacher))).sum(1).mean()
    assert abs(reversed_kl - kl) > 0.1 * kl  # the order of the KL's arguments is visible at this tolerance
