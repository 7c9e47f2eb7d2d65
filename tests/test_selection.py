"""FlexMatch, FreeMatch, SoftMatch and UDA (docs/algorithms.md): one step's loss and state update by hand."""

import math

from libml import selection

import numpy as np
import pytest
import tensorflow as tf


def log_softmax(x):
    x = np.asarray(x, np.float64)
    return x - x.max(axis=-1, keepdims=True) - np.log(np.exp(x - x.max(axis=-1, keepdims=True)).sum(-1, keepdims=True))


# Strong-view logits shared by the loss tests: 4 rows, 3 classes.
STRONG = np.array([[1.0, 2.0, 0.0], [0.0, 3.0, 0.0], [0.5, 0.5, 0.5], [0.0, 0.0, 1.0]], np.float32)
LS = log_softmax(STRONG)  # log-probabilities of the strong view, for the expected CE


def weak_from(probs):
    """Weak-view logits whose softmax is exactly `probs` (log of probabilities)."""
    return tf.Variable(np.log(np.asarray(probs, np.float32)))


# --- FlexMatch ---------------------------------------------------------------------------------------------

# 8 unlabelled images: 5 unused, two selected class 0, one class 1, none class 2.
SEL = tf.constant([-1, -1, -1, -1, -1, 0, 0, 1], tf.int64)


def test_flexmatch_learning_effect_and_thresholds_by_hand():
    # sigma = [2, 1, 0], unused = 5. Warm-up: / max(2, 5) = 5; without: / 2.
    np.testing.assert_allclose(selection.flexmatch_learning_effect(SEL, 3).numpy(), [0.4, 0.2, 0.0], rtol=1e-6)
    np.testing.assert_allclose(selection.flexmatch_learning_effect(SEL, 3, warmup=False), [1.0, 0.5, 0.0], rtol=1e-6)
    # M(x) = x / (2 - x): M(0.4) = 0.25, M(0.2) = 1/9, M(1) = 1, M(0.5) = 1/3.
    np.testing.assert_allclose(selection.flexmatch_thresholds(SEL, 3), [0.95 * 0.25, 0.95 / 9, 0.0], rtol=1e-6)
    np.testing.assert_allclose(selection.flexmatch_thresholds(SEL, 3, warmup=False), [0.95, 0.95 / 3, 0.0], rtol=1e-6)


def test_flexmatch_all_unused_gives_zero_thresholds_in_both_modes():
    sel = selection.flexmatch_init(5)
    assert sel.dtype == tf.int64 and sel.numpy().tolist() == [-1] * 5
    for warmup in (True, False):
        np.testing.assert_array_equal(selection.flexmatch_thresholds(sel, 3, warmup=warmup).numpy(), [0, 0, 0])
    # So every row passes, however unsure.
    out = selection.flexmatch_loss(np.zeros([4, 3], np.float32), STRONG, sel)
    np.testing.assert_array_equal(out.mask.numpy(), [1, 1, 1, 1])


def test_flexmatch_loss_by_hand():
    q = [[0.9, 0.05, 0.05], [0.3, 0.4, 0.3], [0.34, 0.33, 0.33], [0.2, 0.2, 0.6]]
    weak = weak_from(q)
    strong = tf.Variable(STRONG)
    with tf.GradientTape() as tape:
        out = selection.flexmatch_loss(weak, strong, SEL, warmup=False)
    # Thresholds [0.95, 0.3167, 0]: row 0 (0.9 < 0.95) and row 2 (class 0, 0.34 < 0.95) fail.
    np.testing.assert_array_equal(out.labels.numpy(), [0, 1, 0, 2])
    assert out.labels.dtype == tf.int64 and out.mask.dtype == tf.float32
    np.testing.assert_array_equal(out.mask.numpy(), [0, 1, 0, 1])
    assert float(out.loss) == pytest.approx(-(LS[1, 1] + LS[3, 2]) / 4, rel=1e-5)
    assert float(out.monitors['mask']) == 0.5
    np.testing.assert_allclose(out.monitors['class_thresholds'].numpy(), [0.95, 0.95 / 3, 0.0], rtol=1e-6)
    assert tape.gradient(out.loss, weak) is None
    # With the warm-up the thresholds are [0.2375, 0.1056, 0]: every row passes.
    np.testing.assert_array_equal(selection.flexmatch_loss(weak, strong, SEL).mask.numpy(), [1, 1, 1, 1])


def test_flexmatch_update_by_hand_with_repeated_index_and_equality():
    sel = tf.constant([-1, 2, -1, -1, -1, -1], tf.int64)
    indices = tf.constant([4, 1, 4, 0, 3, 3], tf.int64)
    probs = np.array(
        [
            [0.02, 0.02, 0.96],  # image 4 -> 2, then overwritten by row 2
            [0.5, 0.3, 0.2],  # image 1: not confident, keeps its old 2
            [0.01, 0.97, 0.02],  # image 4 -> 1 (the last confident row of image 4 wins)
            [0.95, 0.03, 0.02],  # image 0: exactly at tau, >= selects it -> 0
            [0.99, 0.005, 0.005],  # image 3 -> 0
            [0.2, 0.2, 0.6],  # image 3 again, not confident: does not overwrite
        ],
        np.float32,
    )
    expected = [0, 2, -1, 0, 1, -1]
    new = selection.flexmatch_update(sel, indices, probs, 0.95)
    assert new.dtype == tf.int64
    np.testing.assert_array_equal(new.numpy(), expected)
    compiled = tf.function(lambda s, i, p: selection.flexmatch_update(s, i, p, 0.95), jit_compile=True)
    np.testing.assert_array_equal(compiled(sel, indices, probs).numpy(), expected)
    # No confident row: nothing changes.
    np.testing.assert_array_equal(
        selection.flexmatch_update(sel, indices, probs * 0 + 1 / 3, 0.95).numpy(), sel.numpy()
    )


# --- FreeMatch ---------------------------------------------------------------------------------------------

FREE_Q = [[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.6, 0.3, 0.1], [0.3, 0.355, 0.345]]
# With m = 0.9 from the initial 1/3's:
#   mean max q = (0.7 + 0.8 + 0.6 + 0.355) / 4 = 0.61375  -> tau = 0.3 + 0.061375 = 0.361375
#   mean q = [1.7, 1.655, 0.645] / 4 = [0.425, 0.41375, 0.16125] -> p = [0.3425, 0.341375, 0.316125]
#   argmax = [0, 1, 0, 1] -> histogram [0.5, 0.5, 0] -> hist = [0.35, 0.35, 0.3]
FREE_TAU = 0.3 + 0.1 * 0.61375
FREE_P = [0.3 + 0.1 * 0.425, 0.3 + 0.1 * 0.41375, 0.3 + 0.1 * 0.16125]
FREE_HIST = [0.35, 0.35, 0.3]


def test_freematch_update_by_hand():
    state = selection.freematch_update(selection.freematch_init(3), np.float32(FREE_Q), 0.9)
    assert float(state.tau) == pytest.approx(FREE_TAU, rel=1e-6)
    np.testing.assert_allclose(state.p.numpy(), FREE_P, rtol=1e-6)
    np.testing.assert_allclose(state.hist.numpy(), FREE_HIST, rtol=1e-6)
    # T_c = tau * p_c / max p = 0.361375 * [1, 0.341375 / 0.3425, 0.316125 / 0.3425].
    expected = [FREE_TAU, FREE_TAU * FREE_P[1] / FREE_P[0], FREE_TAU * FREE_P[2] / FREE_P[0]]
    np.testing.assert_allclose(selection.freematch_thresholds(state).numpy(), expected, rtol=1e-6)


def test_freematch_loss_by_hand():
    state = selection.FreeMatchState(tf.constant(FREE_TAU), tf.constant(FREE_P), tf.constant(FREE_HIST))
    out = selection.freematch_loss(weak_from(FREE_Q), STRONG, state)
    # Row 3: class 1, 0.355 < T_1 = 0.3602; the others clear 0.3614.
    np.testing.assert_array_equal(out.mask.numpy(), [1, 1, 1, 0])
    np.testing.assert_array_equal(out.labels.numpy(), [0, 1, 0, 1])
    assert float(out.loss) == pytest.approx(-(LS[0, 0] + LS[1, 1] + LS[2, 0]) / 4, rel=1e-5)
    assert float(out.monitors['threshold']) == pytest.approx(FREE_TAU, rel=1e-6)


def test_freematch_fairness_loss_by_hand():
    state = selection.FreeMatchState(tf.constant(FREE_TAU), tf.constant(FREE_P), tf.constant(FREE_HIST))
    r = np.array([[0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.5, 0.4, 0.1], [0.1, 0.1, 0.8]], np.float32)
    strong = tf.Variable(np.log(r))
    mask = tf.constant([1.0, 1.0, 1.0, 0.0])
    with tf.GradientTape() as tape:
        loss = selection.freematch_fairness_loss(strong, mask, state)
    # Masked rows 0-2: argmax [0, 1, 0] -> h_s = [2/3, 1/3, 0]; mean r = [1.3, 1.4, 0.3] / 3.
    # b = SumNorm([1.3/3 / (2/3), 1.4/3 / (1/3), 0]) = [0.65, 1.4, 0] / 2.05 (1/0 read as 0).
    b = np.array([0.65, 1.4, 0.0]) / 2.05
    a = np.array(FREE_P) / np.array(FREE_HIST)
    a = a / a.sum()
    expected = a[0] * math.log(b[0] + 1e-12) + a[1] * math.log(b[1] + 1e-12) + a[2] * math.log(1e-12)
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    assert float(loss) < 0  # minus a cross-entropy
    grad = tape.gradient(loss, strong).numpy()
    np.testing.assert_array_equal(grad[3], [0, 0, 0])  # the unmasked row plays no part
    assert np.abs(grad[:3]).sum() > 0


def test_freematch_empty_mask_gives_zero_losses_and_finite_gradient():
    state = selection.freematch_init(3)._replace(tau=tf.constant(0.999))
    strong = tf.Variable(STRONG)
    with tf.GradientTape() as tape:
        out = selection.freematch_loss(np.zeros([4, 3], np.float32), strong, state)
        fairness = selection.freematch_fairness_loss(strong, out.mask, state)
        total = out.loss + fairness
    np.testing.assert_array_equal(out.mask.numpy(), [0, 0, 0, 0])
    assert float(out.loss) == 0.0 and float(fairness) == 0.0
    np.testing.assert_array_equal(tape.gradient(total, strong).numpy(), np.zeros([4, 3]))


# --- SoftMatch ---------------------------------------------------------------------------------------------


def test_softmatch_update_by_hand_first_and_second_step():
    q = np.array([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6], [0.3, 0.5, 0.2]], np.float32)
    state = selection.softmatch_update(selection.softmatch_init(3), q, 0.9)
    # First step: pbar is the batch mean itself.
    pbar = np.array([1.1, 1.0, 0.9]) / 3
    np.testing.assert_allclose(state.pbar.numpy(), pbar, rtol=1e-6)
    aligned = q * (1 / 3 + 1e-6) / (pbar + 1e-6)
    top = (aligned / aligned.sum(1, keepdims=True)).max(1)  # ~ [0.5702, 0.6358, 0.5025]
    mean = top.sum() / 3
    var = ((top - mean) ** 2).sum() / 2  # unbiased
    assert float(state.mu) == pytest.approx(0.9 / 3 + 0.1 * mean, rel=1e-6)
    assert float(state.var) == pytest.approx(0.9 * 1.0 + 0.1 * var, rel=1e-6)
    # Second step: pbar is an EMA now.
    q2 = np.array([[0.1, 0.1, 0.8], [0.1, 0.8, 0.1]], np.float32)
    state2 = selection.softmatch_update(state, q2, 0.9)
    pbar2 = 0.9 * pbar + 0.1 * np.array([0.1, 0.45, 0.45])
    np.testing.assert_allclose(state2.pbar.numpy(), pbar2, rtol=1e-6)
    aligned2 = q2 * (1 / 3 + 1e-6) / (pbar2 + 1e-6)
    top2 = (aligned2 / aligned2.sum(1, keepdims=True)).max(1)
    assert float(state2.var) == pytest.approx(0.9 * float(state.var) + 0.1 * (top2[0] - top2[1]) ** 2 / 2, rel=1e-5)


def test_softmatch_weight_by_hand():
    aligned = np.array([[0.9, 0.05, 0.05], [0.5, 0.3, 0.2], [0.3, 0.3, 0.4]], np.float32)
    # mu 0.6, var 0.04, n_sigma 2: 2 var / n^2 = 0.02; max q' - mu = [+0.3, -0.1, -0.2].
    weight = selection.softmatch_weight(aligned, 0.6, 0.04, 2)
    np.testing.assert_allclose(weight.numpy(), [1.0, math.exp(-0.01 / 0.02), math.exp(-0.04 / 0.02)], rtol=1e-5)


def test_softmatch_loss_by_hand_pseudo_label_from_unaligned():
    state = selection.SoftMatchState(tf.constant([0.5, 0.25, 0.25]), tf.constant(0.6), tf.constant(0.04))
    q = [[0.5, 0.25, 0.25], [0.4, 0.35, 0.25], [0.1, 0.1, 0.8], [0.25, 0.25, 0.5]]
    out = selection.softmatch_loss(weak_from(q), STRONG, state)

    def aligned_max(row):
        a = np.array(row) * (1 / 3 + 1e-6) / (np.array([0.5, 0.25, 0.25]) + 1e-6)
        return (a / a.sum()).max()

    # q / pbar: row 0 [1, 1, 1] -> 1/3; row 1 [0.8, 1.4, 1.0] -> 1.4 / 3.2 = 0.4375 (argmax 1, but the
    # pseudo-label is the unaligned argmax 0); row 2 [0.2, 0.4, 3.2] -> 0.842 >= mu; row 3 [0.5, 1, 2] -> 4/7 = 0.571.
    w = [math.exp(-((aligned_max(row) - 0.6) ** 2) / 0.02) if aligned_max(row) < 0.6 else 1.0 for row in q]
    assert w[2] == 1.0 and w[0] == pytest.approx(math.exp(-((1 / 3 - 0.6) ** 2) / 0.02), rel=1e-4)
    np.testing.assert_allclose(out.mask.numpy(), w, rtol=1e-5)
    np.testing.assert_array_equal(out.labels.numpy(), [0, 0, 2, 2])
    expected = -(w[0] * LS[0, 0] + w[1] * LS[1, 0] + w[2] * LS[2, 2] + w[3] * LS[3, 2]) / 4
    assert float(out.loss) == pytest.approx(expected, rel=1e-5)
    assert float(out.monitors['mask']) == pytest.approx(sum(w) / 4, rel=1e-5)


# --- UDA ---------------------------------------------------------------------------------------------------


def test_uda_loss_by_hand():
    weak = tf.Variable(np.array([[2.0, 0, 0], [3.0, 0, 0], [0, 0, 0], [0, 0, 4.0]], np.float32))
    strong = tf.Variable(STRONG)
    with tf.GradientTape() as tape:
        out = selection.uda_loss(weak, strong)
    # max q: e^2/(e^2+2) = 0.787 (< 0.8), e^3/(e^3+2) = 0.909, 1/3, e^4/(e^4+2) = 0.965.
    np.testing.assert_array_equal(out.mask.numpy(), [0, 1, 0, 1])
    np.testing.assert_array_equal(out.labels.numpy(), [0, 0, 0, 2])
    # Targets softmax(weak / 0.4): row 1 from [7.5, 0, 0], row 3 from [0, 0, 10].
    t1 = np.array([math.exp(7.5), 1, 1]) / (math.exp(7.5) + 2)
    t3 = np.array([1, 1, math.exp(10)]) / (math.exp(10) + 2)
    kl1 = (t1 * (np.log(t1) - LS[1])).sum()
    kl3 = (t3 * (np.log(t3) - LS[3])).sum()
    assert float(out.loss) == pytest.approx((kl1 + kl3) / 4, rel=1e-5)
    grad_weak, grad_strong = tape.gradient(out.loss, [weak, strong])
    assert grad_weak is None
    s = np.exp(LS)
    expected_grad = np.zeros([4, 3])
    expected_grad[1] = (s[1] - t1) / 4
    expected_grad[3] = (s[3] - t3) / 4
    np.testing.assert_allclose(grad_strong.numpy(), expected_grad, atol=1e-6)


def test_uda_mask_is_strict_and_can_be_empty():
    # softmax([0, 0]) is exactly [0.5, 0.5]: at the threshold is not above it.
    out = selection.uda_loss([[0.0, 0.0]], [[1.0, 0.0]], confidence=0.5)
    assert out.mask.numpy().tolist() == [0.0] and float(out.loss) == 0.0


# --- Every function inside tf.function with XLA ------------------------------------------------------------


def test_losses_and_updates_compile_with_xla_and_match_eager():
    rng = np.random.RandomState(0)
    weak = rng.normal(size=[8, 3]).astype(np.float32) * 3
    strong = rng.normal(size=[8, 3]).astype(np.float32)
    sel = tf.constant([-1, 0, 1, 1, -1, 2, -1, -1, 0, -1], tf.int64)
    free = selection.freematch_init(3)
    soft = selection.softmatch_init(3)

    def step(weak, strong):
        q = tf.nn.softmax(weak)
        flex = selection.flexmatch_loss(weak, strong, sel)
        new_free = selection.freematch_update(free, q)
        fm = selection.freematch_loss(weak, strong, new_free)
        new_soft = selection.softmatch_update(soft, q)
        sm = selection.softmatch_loss(weak, strong, new_soft)
        uda = selection.uda_loss(weak, strong)
        fair = selection.freematch_fairness_loss(strong, fm.mask, new_free)
        return flex.loss, fm.loss, fair, sm.loss, uda.loss, new_free.tau, new_soft.var

    eager = step(weak, strong)
    compiled = tf.function(step, jit_compile=True)(weak, strong)
    for a, b in zip(eager, compiled):
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-5, atol=1e-6)
