"""freematch.py: one step's state update, loss and fairness term on a fixed tiny batch against numpy, and the
state after a compiled step of a tiny WRN (docs/algorithms.md#freematch). Its exact resume after SIGKILL:
test_fixmatch.py."""

import numpy as np
import pytest
from linear_step import K, run_stateful, softmax, successor_setup, supervised, xent
from plain import first_compiled_step

import freematch


def test_freematch_updates_its_state_then_masks_and_adds_the_fairness_term():
    model, x, labels, u, u_labels, step = successor_setup()
    initial = {'tau': np.float32(0.7), 'p': np.float32([0.2, 0.3, 0.5]), 'hist': np.float32([0.3, 0.3, 0.4])}
    m = 0.9
    loss, stats, state = run_stateful(
        freematch.FreeMatch, step, x, labels, u, u_labels, initial, state_momentum=m, wf=0.5
    )
    q = softmax(model.numpy(u[:, 0]).astype(np.float64))
    y, n = q.argmax(1), len(q)
    tau = m * 0.7 + (1 - m) * q.max(1).mean()
    p = m * initial['p'] + (1 - m) * q.mean(0)
    hist = m * initial['hist'] + (1 - m) * np.bincount(y, minlength=K) / n
    np.testing.assert_allclose([state['tau'], *state['p'], *state['hist']], [tau, *p, *hist], rtol=1e-5)
    thresholds = tau * p / p.max()
    mask = q.max(1) >= thresholds[y]
    assert 0 < mask.sum() < n
    strong = model.numpy(u[:, 1])
    xeu = (mask * xent(np.eye(K)[y], strong)).mean()
    r = softmax(strong)[mask]
    seen = np.bincount(r.argmax(1), minlength=K) / mask.sum()
    a = (p / hist) / (p / hist).sum()
    b = np.where(seen > 0, r.mean(0) / np.where(seen > 0, seen, 1), 0.0)
    fairness = (a * np.log(b / b.sum() + 1e-12)).sum()
    assert stats['fairness'] == pytest.approx(fairness, rel=1e-4)
    assert loss == pytest.approx(supervised(model, x, labels) + xeu + 0.5 * fairness, rel=1e-5)
    np.testing.assert_allclose(stats['threshold'], thresholds, rtol=1e-5)
    assert stats['global_threshold'] == pytest.approx(tau, rel=1e-6)
    assert stats['mask'] == pytest.approx(mask.mean())


def test_freematch_state_after_a_compiled_step(digits):
    probs, _, stats, state = first_compiled_step(freematch.FreeMatch, state_momentum=0.5)
    tau = 0.5 * 0.1 + 0.5 * probs.max(1).mean()
    p = 0.5 * 0.1 + 0.5 * probs.mean(0)
    hist = 0.5 * 0.1 + 0.5 * np.bincount(probs.argmax(1), minlength=10) / len(probs)
    np.testing.assert_allclose(state['tau'], tau, rtol=1e-5)
    np.testing.assert_allclose(state['p'], p, rtol=1e-5)
    np.testing.assert_allclose(state['hist'], hist, rtol=1e-5)
    np.testing.assert_allclose(stats['threshold'].numpy(), tau * p / p.max(), rtol=1e-5)
