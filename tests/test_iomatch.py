"""iomatch.py: its loss on a fixed tiny batch, a linear model with heads, against numpy (docs/algorithms.md#iomatch)."""

import numpy as np
import pytest
import tensorflow as tf
from linear_step import B, K, headed_setup, ova_loss_numpy, run_loss, softmax, supervised, xent

import iomatch


@pytest.mark.parametrize('open_on, align', [(True, False), (False, False), (True, True)])
def test_iomatch(open_on, align):
    model, _, x, labels, u, u_labels, step = headed_setup()
    settings = dict(uratio=2, p_cutoff=0.7, q_cutoff=0.5, open_start_kimg=0 if open_on else 1)
    queue = np.random.RandomState(4).dirichlet(np.ones(K), 4).astype(np.float32)  # 4 earlier batch means
    if align:
        settings.update(da_len=4)
        step = step._replace(state={'queue': tf.Variable(queue), 'ptr': tf.Variable(2, dtype=tf.int64)})
    loss, stats = run_loss(iomatch.IOMatch, step, x, labels, u, u_labels, **settings)
    weak, strong = u[:, 0], u[:, 1]
    p = softmax(model.numpy(weak))
    if align:  # this batch's mean replaces row 2 of the queue, then p is aligned to uniform classes with it
        queue[2] = p.mean(0)
        np.testing.assert_allclose(step.state['queue'].numpy(), queue, rtol=1e-5)
        assert int(step.state['ptr'].numpy()) == 3
        p = p * (1 / K + 1e-6) / (queue.mean(0) + 1e-6)
        p /= p.sum(1, keepdims=True)
    p_out, p_in = model.numpy_ova(weak)
    q = np.concatenate([p * p_in, (p * p_out).sum(1, keepdims=True)], 1)
    closed_mask = (p.max(1) >= 0.7) & (q[:, K] < 0.5)
    open_mask = q.max(1) >= 0.5
    assert 0 < closed_mask.sum() < 2 * B and 0 < open_mask.sum() < 2 * B  # both masks select some rows
    closed = (closed_mask * xent(p, model.numpy(strong))).mean()  # soft targets p, as the authors' code
    opened = (open_mask * xent(q, model.numpy_open(strong))).mean()
    ova = ova_loss_numpy(model, x, labels)
    assert stats['xeu'] == pytest.approx(closed, rel=1e-5)
    assert stats['open'] == pytest.approx(opened, rel=1e-5)
    assert stats['ova'] == pytest.approx(ova, rel=1e-5)
    assert stats['mask'] == pytest.approx(closed_mask.mean())
    assert stats['open_mask'] == pytest.approx(open_mask.mean())
    known = u_labels >= 0
    assert stats['label_accuracy'] == pytest.approx((p.argmax(1) == u_labels)[known].mean())
    expected = supervised(model, x, labels) + ova + closed + (opened if open_on else 0.0)
    assert loss == pytest.approx(expected, rel=1e-5)
