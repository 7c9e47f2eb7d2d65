"""flexmatch.py: one step's loss and state update on a fixed tiny batch against numpy, and the state after a
compiled step of a tiny WRN (docs/algorithms.md#flexmatch). Its exact resume after SIGKILL: test_fixmatch.py."""

import numpy as np
import pytest
from linear_step import INDICES, B, K, run_stateful, softmax, successor_setup, supervised, xent
from plain import first_compiled_step

import flexmatch


def test_flexmatch_thresholds_from_the_state_before_the_step_then_updates_it():
    model, x, labels, u, u_labels, step = successor_setup()
    selected = np.array([2, 2, 2, 2, 2, 0, 1, -1, -1, -1])
    loss, stats, state = run_stateful(
        flexmatch.FlexMatch, step, x, labels, u, u_labels, {'selected': selected}, confidence=0.8
    )
    q = softmax(model.numpy(u[:, 0]))
    y = q.argmax(1)
    sigma = np.bincount(selected[selected >= 0], minlength=K)  # [1, 1, 5], 3 unused
    beta = sigma / max(sigma.max(), np.sum(selected < 0))
    thresholds = 0.8 * beta / (2 - beta)
    mask = q.max(1) >= thresholds[y]
    assert 0 < mask.sum() < 2 * B
    xeu = (mask * xent(np.eye(K)[y], model.numpy(u[:, 1]))).mean()
    assert stats['xeu'] == pytest.approx(xeu, rel=1e-5)
    assert loss == pytest.approx(supervised(model, x, labels) + xeu, rel=1e-5)
    np.testing.assert_allclose(stats['threshold'], thresholds, rtol=1e-6)
    assert stats['mask'] == pytest.approx(mask.mean())
    expected = selected.copy()
    confident = q.max(1) >= 0.8
    assert 0 < confident.sum() < 2 * B
    expected[INDICES[confident]] = y[confident]
    np.testing.assert_array_equal(state['selected'], expected)
    assert stats['selected'] == pytest.approx(np.mean(expected >= 0))
    known = u_labels >= 0
    assert stats['label_accuracy'] == pytest.approx((y == u_labels)[known].mean())


def test_flexmatch_records_confident_predictions_at_the_images_indices_in_a_compiled_step(digits):
    probs, _, _, _ = first_compiled_step(flexmatch.FlexMatch)
    top = np.sort(probs.max(1))
    k = 8 + np.argmax(np.diff(top[8:24]))  # the widest gap in the middle: rows on both sides of tau
    tau = (top[k] + top[k + 1]) / 2
    probs_again, indices, stats, state = first_compiled_step(flexmatch.FlexMatch, confidence=tau)
    np.testing.assert_allclose(probs_again, probs, rtol=1e-5)
    confident = probs.max(1) >= tau
    assert 0 < confident.sum() < len(probs)
    expected = np.full_like(state['selected'], -1)
    expected[indices[confident]] = probs.argmax(1)[confident]
    np.testing.assert_array_equal(state['selected'], expected)
    assert float(stats['mask']) == 1.0  # thresholds from the empty state before the step: 0
    np.testing.assert_array_equal(stats['threshold'].numpy(), np.zeros(10))
    _, _, _, compiled = first_compiled_step(flexmatch.FlexMatch, confidence=tau, xla=True)  # the XLA step too
    np.testing.assert_array_equal(compiled['selected'], expected)
