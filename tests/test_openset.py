"""OpenMatch, IOMatch and the outlier scores (libml/openset.py) against hand computations."""

import math

from libml import maths, openset

import numpy as np
import pytest
import tensorflow as tf


def ova_from(p_in):
    """OVA logits [N, 2C] (outside zeros first, then inside logit(p_in)) whose p_in is exactly the given [N, C]."""
    p_in = np.asarray(p_in, np.float64)
    inside = np.log(p_in / (1 - p_in))
    return np.concatenate([np.zeros_like(inside), inside], axis=1).astype(np.float32)


def log_softmax(x):
    x = np.asarray(x, np.float64)
    e = x - x.max(axis=-1, keepdims=True)
    return e - np.log(np.exp(e).sum(-1, keepdims=True))


def entropy2(p):
    return -p * math.log(p) - (1 - p) * math.log(1 - p)


# --- OpenMatch ---------------------------------------------------------------------------------------------

P_IN = [[0.8, 0.3, 0.6], [0.1, 0.9, 0.5]]


def test_ova_probs_layout():
    p_out, p_in = openset.ova_probs(ova_from(P_IN))
    np.testing.assert_allclose(p_in.numpy(), P_IN, rtol=1e-6)
    np.testing.assert_allclose(p_out.numpy(), 1 - np.array(P_IN), rtol=1e-5)


def test_ova_loss_by_hand_hard_negative():
    logits = tf.Variable(ova_from(P_IN))
    with tf.GradientTape() as tape:
        loss = openset.ova_loss(logits, tf.constant([0, 1]))
    # Positives: -log 0.8, -log 0.9. Hardest negatives: row 0 max(-log 0.7, -log 0.4) = -log 0.4,
    # row 1 max(-log 0.9, -log 0.5) = -log 0.5.
    expected = (-math.log(0.8) - math.log(0.9)) / 2 + (-math.log(0.4) - math.log(0.5)) / 2
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    grad = tape.gradient(loss, logits).numpy()
    # Only the positive classifier and the hardest negative of each row get a gradient.
    np.testing.assert_array_equal(grad[0, [1, 4]], [0, 0])
    np.testing.assert_array_equal(grad[1, [0, 3]], [0, 0])


def test_ova_entropy_em_and_socr_by_hand():
    other = [[0.5, 0.3, 0.9], [0.2, 0.6, 0.5]]
    h1 = np.mean([entropy2(p) for row in P_IN for p in row])
    h2 = np.mean([entropy2(p) for row in other for p in row])
    assert float(openset.ova_entropy(ova_from(P_IN))) == pytest.approx(h1, rel=1e-5)
    assert float(openset.openmatch_em_loss(ova_from(P_IN), ova_from(other))) == pytest.approx((h1 + h2) / 2, rel=1e-5)
    # Differences of p_in: row 0 [0.3, 0, -0.3], row 1 [-0.1, 0.3, 0]; p_out differs by the same, so x2.
    socr = 2 * ((0.09 + 0 + 0.09) + (0.01 + 0.09 + 0)) / 2
    assert float(openset.socr_loss(ova_from(P_IN), ova_from(other))) == pytest.approx(socr, rel=1e-5)
    out = openset.openmatch_open_losses(ova_from(P_IN), [0, 1], ova_from(P_IN), ova_from(other))
    ova = (-math.log(0.8) - math.log(0.9)) / 2 + (-math.log(0.4) - math.log(0.5)) / 2
    assert float(out.loss) == pytest.approx(ova + 0.1 * (h1 + h2) / 2 + 0.5 * socr, rel=1e-5)


def test_ova_outlier_score_and_inliers_by_hand():
    closed = np.array([[0.0, 1.0, 2.0], [0.0, 3.0, 0.0], [5.0, 0.0, 0.0]], np.float32)
    ova = ova_from([[0.8, 0.3, 0.6], [0.1, 0.9, 0.5], [0.5, 0.9, 0.9]])
    # Predicted classes 2, 1, 0 -> p_out 0.4, 0.1, 0.5 (exactly: both logits 0).
    np.testing.assert_allclose(openset.ova_outlier_score(closed, ova).numpy(), [0.4, 0.1, 0.5], rtol=1e-5)
    np.testing.assert_array_equal(openset.openmatch_inliers(closed, ova).numpy(), [1, 1, 0])  # 0.5 is not < 0.5
    state = openset.openmatch_update_inliers(tf.ones([5]), tf.constant([3, 0, 3]), closed, ova)
    np.testing.assert_array_equal(state.numpy(), [1, 1, 1, 0, 1])  # image 3 written twice: its last row (0) wins


def test_selected_fixmatch_loss_by_hand():
    # Rows: weak logits with argmax 0, 1, 0, 2; q_max of row 3 is 0.5 < 0.6; rows 0, 1, 3 selected.
    weak = np.log(np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.9, 0.05, 0.05], [0.25, 0.25, 0.5]], np.float32))
    strong = np.log(np.array([[0.5, 0.25, 0.25], [0.2, 0.4, 0.4], [0.1, 0.1, 0.8], [0.1, 0.1, 0.8]], np.float32))
    selected = np.array([1.0, 1.0, 0.0, 1.0], np.float32)
    loss, mask, labels = openset.selected_fixmatch_loss(weak, strong, selected, confidence=0.6)
    # CE of the selected confident rows 0 and 1: -log 0.5, -log 0.4; row 3 is selected but not confident (0 in the
    # sum, 1 in the count); row 2 is confident but not selected.
    assert float(loss) == pytest.approx((-math.log(0.5) - math.log(0.4)) / 3, rel=1e-5)
    np.testing.assert_array_equal(mask.numpy(), [1, 1, 0, 0])
    np.testing.assert_array_equal(labels.numpy(), [0, 1, 0, 2])
    # Threshold 0 (the authors'): every selected row counts, the mean over the 3 selected rows.
    loss, _, _ = openset.selected_fixmatch_loss(weak, strong, selected)
    assert float(loss) == pytest.approx((-math.log(0.5) - math.log(0.4) - math.log(0.8)) / 3, rel=1e-5)
    loss, mask, _ = openset.selected_fixmatch_loss(weak, strong, np.zeros(4, np.float32))
    assert float(loss) == 0.0 and not mask.numpy().any()


# --- IOMatch -----------------------------------------------------------------------------------------------


def test_iomatch_align_queue_by_hand():
    state = openset.iomatch_align_init(2, length=3)
    state = openset.iomatch_align_update(state, np.float32([[0.7, 0.3], [0.5, 0.5]]))  # mean [0.6, 0.4]
    state = openset.iomatch_align_update(state, np.float32([[0.2, 0.8]]))
    np.testing.assert_allclose(state.queue.numpy(), [[0.6, 0.4], [0.2, 0.8], [0, 0]], rtol=1e-6)
    assert int(state.ptr) == 2
    # Mean over all 3 rows, the zero row included: [0.8, 1.2] / 3.
    mean = np.array([0.8, 1.2]) / 3
    aligned = np.array([0.5, 0.5]) * (0.5 + 1e-6) / (mean + 1e-6)
    np.testing.assert_allclose(
        openset.iomatch_align(np.float32([[0.5, 0.5]]), state).numpy()[0], aligned / aligned.sum()
    )
    np.testing.assert_allclose(aligned / aligned.sum(), [0.6, 0.4], rtol=1e-5)  # ~ 1/mean normalised
    state = openset.iomatch_align_update(state, np.float32([[1.0, 0.0]]))
    state = openset.iomatch_align_update(state, np.float32([[0.0, 1.0]]))  # wraps: overwrites row 0
    np.testing.assert_allclose(state.queue.numpy(), [[0, 1], [0.2, 0.8], [1, 0]], rtol=1e-6)
    assert int(state.ptr) == 1


IO_P = [[0.7, 0.2, 0.1], [0.97, 0.02, 0.01], [0.01, 0.96, 0.03], [0.5, 0.25, 0.25]]
IO_PIN = [[0.9, 0.5, 0.2], [0.3, 0.9, 0.9], [0.5, 0.95, 0.5], [0.5, 0.5, 0.5]]
# q_c = p_c p_in_c, q_3 = sum_c p_c (1 - p_in_c):
IO_Q = [
    [0.63, 0.1, 0.02, 0.07 + 0.1 + 0.08],
    [0.291, 0.018, 0.009, 0.679 + 0.002 + 0.001],
    [0.005, 0.912, 0.015, 0.005 + 0.048 + 0.015],
    [0.25, 0.125, 0.125, 0.5],
]


def test_iomatch_targets_by_hand():
    q, score = openset.iomatch_targets(np.float32(IO_P), ova_from(IO_PIN))
    np.testing.assert_allclose(q.numpy(), IO_Q, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(q.numpy().sum(1), 1, rtol=1e-6)
    np.testing.assert_allclose(score.numpy(), [0.25, 0.682, 0.068, 0.5], rtol=1e-5)


def test_iomatch_loss_by_hand():
    strong = tf.Variable(np.array([[1.0, 0, 0], [0, 2.0, 0], [0, 0.5, 1.0], [0.3, 0, 0]], np.float32))
    strong_open = tf.Variable(np.array([[0, 0, 0, 1.0], [1.0, 0, 0, 0], [0, 2.0, 0, 0], [0, 0, 0, 0]], np.float32))
    with tf.GradientTape() as tape:
        out = openset.iomatch_loss(strong, strong_open, np.float32(IO_P), ova_from(IO_PIN))
    # Closed: row 0 max p 0.7 < 0.95; row 1 confident but s = 0.682 >= 0.5; row 2 in (0.96, s 0.068);
    # row 3 s = 0.5 exactly: not < 0.5. Open: max q = 0.63, 0.682, 0.912, 0.5 (>= 0.5): all in.
    np.testing.assert_array_equal(out.closed_mask.numpy(), [0, 0, 1, 0])
    np.testing.assert_array_equal(out.open_mask.numpy(), [1, 1, 1, 1])
    np.testing.assert_array_equal(out.labels.numpy(), [0, 0, 1, 0])
    closed = -(np.array(IO_P[2]) * log_softmax(strong.numpy()[2])).sum() / 4
    opened = -sum((np.array(IO_Q[i]) * log_softmax(strong_open.numpy()[i])).sum() for i in range(4)) / 4
    assert float(out.closed) == pytest.approx(closed, rel=1e-5)
    assert float(out.open) == pytest.approx(opened, rel=1e-5)
    assert float(out.monitors['in_mask']) == 0.5 and float(out.monitors['p_mask']) == 0.5
    grads = tape.gradient([out.closed, out.open], [strong, strong_open])
    assert all(g is not None for g in grads)


def test_iomatch_empty_masks():
    p = np.full([2, 3], 1 / 3, np.float32)
    out = openset.iomatch_loss(np.zeros([2, 3]), np.zeros([2, 4]), p, ova_from(np.full([2, 3], 0.1)))
    # max p 1/3 < 0.95; q = [1/30, 1/30, 1/30, 0.9]: open mask on (every image is used).
    np.testing.assert_array_equal(out.closed_mask.numpy(), [0, 0])
    assert float(out.closed) == 0.0
    np.testing.assert_array_equal(out.open_mask.numpy(), [1, 1])


def test_iomatch_outlier_score():
    np.testing.assert_allclose(openset.iomatch_outlier_score([[0, 0, 0, math.log(3)]]).numpy(), [0.5], rtol=1e-6)


# --- Outlier scores ----------------------------------------------------------------------------------------


def test_max_softmax_and_percent_mask_scores():
    probs = np.float32([[0.7, 0.2, 0.1], [0.4, 0.35, 0.25]])
    np.testing.assert_allclose(openset.max_softmax_score(probs).numpy(), [0.3, 0.6], rtol=1e-6)
    np.testing.assert_allclose(openset.percent_mask_score(probs).numpy(), [0.3, 0.6], rtol=1e-6)


def test_percent_mask_drops_exactly_the_highest_scores():
    rng = np.random.RandomState(1)
    logits = rng.normal(size=[40, 5]).astype(np.float32)
    probs = tf.nn.softmax(logits)
    score = openset.percent_mask_score(probs).numpy()
    for percent in (0.25, 0.5):
        dropped = np.flatnonzero(maths.percent_mask(probs, percent).numpy() == 0)
        top = np.argsort(-score)[: int(percent * 40)]
        assert set(dropped) == set(top)


def test_openset_functions_compile_with_xla_and_match_eager():
    rng = np.random.RandomState(0)
    closed = rng.normal(size=[6, 3]).astype(np.float32) * 3
    ova = rng.normal(size=[6, 6]).astype(np.float32)
    ova2 = rng.normal(size=[6, 6]).astype(np.float32)
    opened = rng.normal(size=[6, 4]).astype(np.float32)
    queue = openset.iomatch_align_init(3, 4)

    def step(closed, ova, ova2, opened):
        p = tf.nn.softmax(closed)
        new_queue = openset.iomatch_align_update(queue, p)
        io = openset.iomatch_loss(closed, opened, openset.iomatch_align(p, new_queue), ova)
        om = openset.openmatch_open_losses(ova, tf.constant([0, 1, 2, 0, 1, 2]), ova, ova2)
        inliers = openset.openmatch_update_inliers(tf.ones([8]), tf.constant([7, 0, 1, 2, 3, 7]), closed, ova)
        return io.closed, io.open, om.loss, inliers, openset.ova_outlier_score(closed, ova)

    eager = step(closed, ova, ova2, opened)
    compiled = tf.function(step, jit_compile=True)(closed, ova, ova2, opened)
    for a, b in zip(eager, compiled):
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-5, atol=1e-6)
