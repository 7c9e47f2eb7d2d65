"""uda.py: one step's loss, with TSA on the labelled rows, on a fixed tiny batch against numpy
(docs/algorithms.md#uda)."""

import numpy as np
import pytest
from linear_step import B, K, run_stateful, softmax, successor_setup, xent

import uda


def test_uda_with_tsa_on_the_labelled_loss():
    model, x, labels, u, u_labels, step = successor_setup()
    loss, stats, state = run_stateful(uda.UDA, step, x, labels, u, u_labels)
    assert state == {}
    threshold = 0.25 * (1 - 1 / K) + 1 / K  # linear schedule at progress 0.25
    zx = model.numpy(x)
    kept = softmax(zx)[np.arange(B), labels] < threshold
    assert 0 < kept.sum() < B
    xe = (kept * xent(np.eye(K)[labels], zx)).sum() / kept.sum()
    zw, zs = model.numpy(u[:, 0]), model.numpy(u[:, 1])
    mask = softmax(zw).max(1) > 0.8
    assert 0 < mask.sum() < 2 * B
    target = softmax(zw / 0.4)
    kl = (target * (np.log(target) - np.log(softmax(zs)))).sum(1)
    assert stats['xe'] == pytest.approx(xe, rel=1e-5)
    assert stats['kl'] == pytest.approx((mask * kl).mean(), rel=1e-5)
    assert loss == pytest.approx(xe + (mask * kl).mean(), rel=1e-5)
    assert (stats['mask'], stats['tsa_threshold']) == pytest.approx((mask.mean(), threshold))
