"""softmatch.py: one step's state update and weighted loss on a fixed tiny batch against numpy, and the state
after a compiled step of a tiny WRN (docs/algorithms.md#softmatch)."""

import numpy as np
import pytest
from linear_step import K, run_stateful, softmax, successor_setup, supervised, xent
from plain import first_compiled_step

import softmatch


def test_softmatch_updates_its_state_then_weighs_every_row():
    model, x, labels, u, u_labels, step = successor_setup()
    initial = {'pbar': np.float32([0.2, 0.3, 0.5]), 'mu': np.float32(0.8), 'var': np.float32(0.05)}
    m = 0.9
    loss, stats, state = run_stateful(
        softmatch.SoftMatch, step, x, labels, u, u_labels, initial, state_momentum=m, n_sigma=3.0
    )
    q = softmax(model.numpy(u[:, 0]).astype(np.float64))
    pbar = m * initial['pbar'] + (1 - m) * q.mean(0)
    aligned = q * (1 / K + 1e-6) / (pbar + 1e-6)
    top = (aligned / aligned.sum(1, keepdims=True)).max(1)
    mu = m * 0.8 + (1 - m) * top.mean()
    var = m * 0.05 + (1 - m) * top.var(ddof=1)
    np.testing.assert_allclose([*state['pbar'], state['mu'], state['var']], [*pbar, mu, var], rtol=1e-5)
    weight = np.exp(-(np.minimum(top - mu, 0) ** 2) / (2 * var / 3.0**2))
    assert np.sum((weight > 0.05) & (weight < 0.95)) >= 2 and weight.max() == 1.0, weight
    xeu = (weight * xent(np.eye(K)[q.argmax(1)], model.numpy(u[:, 1]))).mean()
    assert stats['xeu'] == pytest.approx(xeu, rel=1e-4)
    assert loss == pytest.approx(supervised(model, x, labels) + xeu, rel=1e-5)
    assert stats['mask'] == pytest.approx(weight.mean(), rel=1e-5)
    assert (stats['mu'], stats['var']) == pytest.approx((mu, var), rel=1e-5)


def test_softmatch_state_after_a_compiled_step(digits):
    probs, _, stats, state = first_compiled_step(softmatch.SoftMatch, state_momentum=0.5)
    pbar = probs.mean(0)  # the first step starts the alignment EMA at the batch mean
    aligned = probs * (0.1 + 1e-6) / (pbar + 1e-6)
    top = (aligned / aligned.sum(1, keepdims=True)).max(1)
    np.testing.assert_allclose(state['pbar'], pbar, rtol=1e-5)
    np.testing.assert_allclose(state['mu'], 0.5 * 0.1 + 0.5 * top.mean(), rtol=1e-5)
    np.testing.assert_allclose(state['var'], 0.5 * 1.0 + 0.5 * top.var(ddof=1), rtol=1e-5)
    assert float(stats['mu']) == pytest.approx(state['mu'])
