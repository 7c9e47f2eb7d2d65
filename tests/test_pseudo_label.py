"""pseudo_label.py: the loss on a fixed tiny batch against numpy (docs/algorithms.md#pseudo-label)."""

import numpy as np
import pytest
from linear_step import B, K, ramp, run_loss, setup, softmax, supervised, xent

import pseudo_label


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
