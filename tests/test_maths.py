"""The RealMix formulas (docs/algorithms.md#realmix) against numbers computed by hand or with numpy."""

import math

from libml import maths

import numpy as np
import pytest
import tensorflow as tf


def np_softmax(logits):
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def test_sharpen_half_temperature():
    out = maths.sharpen(tf.constant([[0.6, 0.3, 0.1]]), 0.5)
    np.testing.assert_allclose(out.numpy(), [[0.36 / 0.46, 0.09 / 0.46, 0.01 / 0.46]], rtol=1e-5)


def test_sharpen_temperature_one_is_identity():
    p = np.array([[0.2, 0.5, 0.3], [0.1, 0.1, 0.8]], np.float32)
    np.testing.assert_allclose(maths.sharpen(p, 1.0).numpy(), p, rtol=1e-6)


def test_guess_label_sharpens_mean_of_views_without_gradient():
    view1 = tf.Variable(np.log([[0.5, 0.25, 0.25]]).astype(np.float32))
    view2 = tf.Variable(np.log([[0.7, 0.25, 0.05]]).astype(np.float32))
    with tf.GradientTape() as tape:
        guess = maths.guess_label([view1, view2], 0.5)
        total = tf.reduce_sum(guess * tf.constant([[1.0, 2.0, 3.0]]))
    # mean = [0.6, 0.25, 0.15]; squared = [0.36, 0.0625, 0.0225], sum 0.445.
    np.testing.assert_allclose(guess.numpy(), [[0.36 / 0.445, 0.0625 / 0.445, 0.0225 / 0.445]], rtol=1e-5)
    assert tape.gradient(total, [view1, view2]) == [None, None]


def test_beta_lambda_range_and_determinism():
    seed = tf.constant([3, 4], tf.int64)
    lam = maths.beta_lambda(seed, 1000, 0.75).numpy()
    assert lam.shape == (1000,) and lam.dtype == np.float32
    assert lam.min() >= 0.5 and lam.max() <= 1.0
    assert lam.std() > 0.05  # really random, not a constant
    np.testing.assert_array_equal(lam, maths.beta_lambda(seed, 1000, 0.75).numpy())
    assert not np.array_equal(lam, maths.beta_lambda(tf.constant([3, 5], tf.int64), 1000, 0.75).numpy())


@pytest.mark.parametrize('alpha', [0.3, 0.75, 2.0])
def test_stateless_gamma_matches_numpy_distribution(alpha):
    draws = maths.stateless_gamma(tf.constant([1, 2], tf.int64), 50000, alpha).numpy()
    reference = np.random.RandomState(0).gamma(alpha, size=50000)
    assert draws.mean() == pytest.approx(alpha, rel=0.03)  # Gamma(a, 1): mean a, variance a
    assert draws.var() == pytest.approx(alpha, rel=0.08)
    quantiles = [0.1, 0.25, 0.5, 0.75, 0.9]
    np.testing.assert_allclose(np.quantile(draws, quantiles), np.quantile(reference, quantiles), rtol=0.06)


def test_beta_lambda_matches_numpy_beta():
    lam = maths.beta_lambda(tf.constant([7, 8], tf.int64), 50000, 0.75).numpy()
    b = np.random.RandomState(1).beta(0.75, 0.75, 50000)
    reference = np.maximum(b, 1 - b)
    quantiles = [0.1, 0.25, 0.5, 0.75, 0.9]
    np.testing.assert_allclose(np.quantile(lam, quantiles), np.quantile(reference, quantiles), rtol=0.02)


def _mix_identity(n, seed):
    """MixUp of one-hot rows: row i of the output exposes lam_i (at i) and pi(i)."""
    x = np.eye(n, dtype=np.float32).reshape(n, 1, 1, n) * np.ones([1, 2, 2, 1], np.float32)
    targets = np.eye(n, dtype=np.float32)
    mixed_x, mixed_t = maths.mixup(x, targets, 0.75, tf.constant(seed, tf.int64))
    return mixed_x.numpy(), mixed_t.numpy()


def test_mixup_rows_are_convex_combinations_with_dominant_self():
    n = 12
    mixed_x, mixed_t = _mix_identity(n, [1, 2])
    assert mixed_x.shape == (n, 2, 2, n) and mixed_t.shape == (n, n)
    # Every pixel of an image row carries the same mixture, which equals the mixed target.
    for i in range(2):
        for j in range(2):
            np.testing.assert_allclose(mixed_x[:, i, j, :], mixed_t, atol=1e-6)
    np.testing.assert_allclose(mixed_t.sum(axis=1), np.ones(n), rtol=1e-6)
    assert (mixed_t >= 0).all()
    lam = np.diag(mixed_t)
    assert (lam >= 0.5 - 1e-6).all()
    partners = []
    for i in range(n):
        others = np.delete(np.arange(n), i)
        nonzero = others[mixed_t[i, others] > 0]
        assert len(nonzero) <= 1
        if len(nonzero):
            np.testing.assert_allclose(mixed_t[i, nonzero[0]], 1 - lam[i], atol=1e-6)
            partners.append(nonzero[0])
    assert len(partners) == len(set(partners)), 'pi must be a permutation'
    assert len(partners) >= n // 2  # a random permutation of 12 rarely has many fixed points


def test_mixup_is_deterministic_given_seed():
    a, _ = _mix_identity(8, [5, 6])
    b, _ = _mix_identity(8, [5, 6])
    c, _ = _mix_identity(8, [5, 7])
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_mixup_inside_tf_function():
    mix = tf.function(lambda x, t, s: maths.mixup(x, t, 0.75, s))
    x = tf.random.uniform([6, 4, 4, 3])
    t = tf.one_hot([0, 1, 2, 0, 1, 2], 3)
    seed = tf.constant([9, 9], tf.int64)
    eager_x, eager_t = maths.mixup(x, t, 0.75, seed)
    graph_x, graph_t = mix(x, t, seed)
    np.testing.assert_allclose(graph_x.numpy(), eager_x.numpy(), rtol=1e-6)
    np.testing.assert_allclose(graph_t.numpy(), eager_t.numpy(), rtol=1e-6)


def test_interleave_offsets():
    assert maths.interleave_offsets(64, 2) == [0, 21, 42, 64]
    assert maths.interleave_offsets(7, 2) == [0, 2, 4, 7]
    assert maths.interleave_offsets(6, 2) == [0, 2, 4, 6]


def _sources(batch, nu):
    """nu + 1 batches whose entries say (source, row) as source * 100 + row."""
    return [tf.constant(np.arange(batch) + 100 * s) for s in range(nu + 1)]


def test_interleave_swaps_slices():
    out = [v.numpy() for v in maths.interleave(_sources(7, 2), 7)]
    # Slices [0:2], [2:4], [4:7]; slice i of batch j comes from source (i - j) mod 3.
    np.testing.assert_array_equal(out[0], [0, 1, 102, 103, 204, 205, 206])
    np.testing.assert_array_equal(out[1], [200, 201, 2, 3, 104, 105, 106])
    np.testing.assert_array_equal(out[2], [100, 101, 202, 203, 4, 5, 6])


@pytest.mark.parametrize('batch,nu', [(3, 2), (7, 2), (64, 2), (10, 3), (5, 1)])
def test_interleave_twice_is_identity_and_mixes_every_batch(batch, nu):
    xy = _sources(batch, nu)
    once = maths.interleave(xy, batch)
    for v in once:
        assert sorted(set(v.numpy() // 100)) == list(range(nu + 1))
    twice = maths.interleave(once, batch)
    for a, b in zip(twice, xy):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_interleave_keeps_trailing_dimensions():
    xy = [tf.fill([6, 2, 3], float(s)) for s in range(3)]
    out = maths.interleave(xy, 6)
    assert [v.shape for v in out] == [(6, 2, 3)] * 3


K = 10
TSA_CASES = [
    ('linear_schedule', 0.0, 0.1),
    ('linear_schedule', 0.5, 0.55),
    ('linear_schedule', 1.0, 1.0),
    ('exp_schedule', 0.0, math.exp(-5) * 0.9 + 0.1),
    ('exp_schedule', 0.5, math.exp(-2.5) * 0.9 + 0.1),
    ('exp_schedule', 1.0, 1.0),
    ('log_schedule', 0.0, 0.1),
    ('log_schedule', 0.5, (1 - math.exp(-2.5)) * 0.9 + 0.1),
    ('log_schedule', 1.0, (1 - math.exp(-5)) * 0.9 + 0.1),
    ('linear', 0.5, 0.55),
    ('exp', 0.0, math.exp(-5) * 0.9 + 0.1),
    ('log', 1.0, (1 - math.exp(-5)) * 0.9 + 0.1),
    ('none', 0.3, 1.0),
]


@pytest.mark.parametrize('schedule,progress,expected', TSA_CASES)
def test_tsa_threshold(schedule, progress, expected):
    eta = maths.tsa_threshold(schedule, tf.constant(progress), K)
    assert eta.dtype == tf.float32
    assert float(eta) == pytest.approx(expected, abs=1e-6)


def test_tsa_threshold_in_tf_function_and_unknown_schedule():
    fn = tf.function(lambda r: maths.tsa_threshold('log_schedule', r, 4))
    assert float(fn(tf.constant(0.5))) == pytest.approx((1 - math.exp(-2.5)) * 0.75 + 0.25, abs=1e-6)
    with pytest.raises(ValueError, match='cosine'):
        maths.tsa_threshold('cosine', 0.5, K)


def test_tsa_mask_on_soft_targets():
    targets = tf.constant([[0.75, 0.25, 0.0], [0.5, 0.5, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    probs = tf.constant([[0.5, 0.5, 0.0], [0.25, 0.25, 0.5], [0.125, 0.125, 0.75], [0.375, 0.5, 0.125]])
    # agreement sum_c t_c p_c = [0.5, 0.25, 0.75, 0.375]; kept when strictly below eta.
    np.testing.assert_array_equal(maths.tsa_mask(targets, probs, 0.5).numpy(), [0, 1, 0, 1])
    np.testing.assert_array_equal(maths.tsa_mask(targets, probs, 0.75).numpy(), [1, 1, 0, 1])
    np.testing.assert_array_equal(maths.tsa_mask(targets, probs, 1.0).numpy(), [1, 1, 1, 1])


LOGITS = np.array([[2.0, 0.5, -1.0], [0.0, 1.0, 3.0], [1.0, 1.0, 1.0], [-2.0, 0.0, 2.5]], np.float32)
TARGETS = np.array([[1, 0, 0], [0.25, 0.75, 0], [0, 0, 1], [0.5, 0.25, 0.25]], np.float32)


def test_supervised_loss_matches_numpy():
    ce = -(TARGETS * np.log(np_softmax(LOGITS.astype(np.float64)))).sum(axis=1)
    assert float(maths.supervised_loss(TARGETS, LOGITS)) == pytest.approx(ce.mean(), rel=1e-5)
    mask = np.array([1, 0, 1, 0], np.float32)
    assert float(maths.supervised_loss(TARGETS, LOGITS, mask)) == pytest.approx((ce[0] + ce[2]) / 2, rel=1e-5)
    assert float(maths.supervised_loss(TARGETS, LOGITS, np.zeros(4, np.float32))) == 0.0


def test_unsupervised_loss_matches_numpy():
    err = (TARGETS - np_softmax(LOGITS.astype(np.float64))) ** 2
    assert float(maths.unsupervised_loss(TARGETS, LOGITS)) == pytest.approx(err.mean(), rel=1e-5)
    mask = np.array([0, 1, 1, 1], np.float32)
    expected = err[1:].sum() / (3 * 3)
    assert float(maths.unsupervised_loss(TARGETS, LOGITS, mask)) == pytest.approx(expected, rel=1e-5)
    assert float(maths.unsupervised_loss(TARGETS, LOGITS, np.zeros(4, np.float32))) == 0.0


def test_unsupervised_loss_hand_value():
    # softmax([0, 0]) = [0.5, 0.5]; errors (1 - 0.5)^2 and (0 - 0.5)^2: mean 0.25.
    assert float(maths.unsupervised_loss([[1.0, 0.0]], [[0.0, 0.0]])) == pytest.approx(0.25)


def _confidence_probs(confidence):
    """Two-class probabilities whose row maximum is `confidence` (all >= 0.5)."""
    c = np.array(confidence, np.float32)
    return np.stack([c, 1 - c], axis=1)


# Ascending confidence: rows 3 (0.55), 1, 6, 4, 2, 7, 0, 5 (0.95).
CONF = [0.9, 0.6, 0.8, 0.55, 0.7, 0.95, 0.65, 0.85]


@pytest.mark.parametrize(
    'percent,expected',
    [
        (-1, [1, 1, 1, 1, 1, 1, 1, 1]),
        (0.0, [1, 1, 1, 1, 1, 1, 1, 1]),
        (0.1, [1, 1, 1, 1, 1, 1, 1, 1]),  # floor(0.8) = 0 dropped
        (0.25, [1, 0, 1, 0, 1, 1, 1, 1]),  # rows 3 and 1 dropped
        (0.3, [1, 0, 1, 0, 1, 1, 1, 1]),  # floor(2.4) = 2
        (0.5, [1, 0, 1, 0, 0, 1, 0, 1]),  # rows 3, 1, 6, 4 dropped
        (1.0, [0, 0, 0, 0, 0, 0, 0, 0]),
    ],
)
def test_percent_mask_drops_least_confident(percent, expected):
    mask = maths.percent_mask(_confidence_probs(CONF), percent)
    assert mask.dtype == tf.float32
    np.testing.assert_array_equal(mask.numpy(), expected)


def test_percent_mask_ties_drop_lower_index_first():
    conf = [0.7, 0.6, 0.7, 0.6, 0.9, 0.6, 0.8, 0.7]
    # Drop 4: the three 0.6 rows (1, 3, 5), then the lowest-index 0.7 row (0).
    np.testing.assert_array_equal(maths.percent_mask(_confidence_probs(conf), 0.5).numpy(), [0, 0, 1, 0, 1, 0, 1, 1])
    # Drop 2 among equal confidences everywhere: rows 0 and 1.
    np.testing.assert_array_equal(maths.percent_mask(np.full([4, 2], 0.5, np.float32), 0.5).numpy(), [0, 0, 1, 1])


def test_percent_mask_counts_with_tensor_percent_in_tf_function():
    fn = tf.function(lambda probs, p: maths.percent_mask(probs, p))
    probs = np_softmax(np.random.RandomState(0).normal(size=[100, 5]).astype(np.float32))
    for p, kept in [(0.29, 71), (0.5, 50), (0.0, 100), (-1.0, 100), (1.0, 0), (0.999, 1)]:
        assert int(fn(probs, tf.constant(p)).numpy().sum()) == kept, p


def test_warmup_weight():
    assert float(maths.warmup_weight(75.0, 0, 1024)) == 0.0
    assert float(maths.warmup_weight(75.0, 512 * 1024, 1024)) == pytest.approx(37.5)
    assert float(maths.warmup_weight(75.0, tf.constant(3 << 20, tf.int64), 1024)) == 75.0
    assert float(maths.warmup_weight(10.0, 256, 1)) == pytest.approx(2.5)


def test_ema_update_exact_values():
    ema = [tf.Variable([1.0, 2.0]), tf.Variable([[0.0]])]
    values = [tf.Variable([3.0, 4.0]), tf.Variable([[10.0]])]
    maths.ema_update(ema, values, 0.9)
    np.testing.assert_allclose(ema[0].numpy(), [1.2, 2.2], rtol=1e-6)
    np.testing.assert_allclose(ema[1].numpy(), [[1.0]], rtol=1e-6)
    np.testing.assert_array_equal(values[0].numpy(), [3.0, 4.0])


def test_decay_weights_exact_values():
    kernels = [tf.Variable([2.0, -4.0]), tf.Variable([[1.0]])]
    maths.decay_weights(kernels, 0.1)
    np.testing.assert_allclose(kernels[0].numpy(), [1.8, -3.6], rtol=1e-6)
    np.testing.assert_allclose(kernels[1].numpy(), [[0.9]], rtol=1e-6)


def test_mixup_compiles_with_xla():
    """XLA draws other random numbers than eager mode, but the same ones for the same seed."""
    n = 9
    x = np.eye(n, dtype=np.float32)
    mix = tf.function(lambda seed: maths.mixup(x, x, 0.75, seed), jit_compile=True)
    mixed, mixed_t = (v.numpy() for v in mix(tf.constant([1, 2], tf.int64)))
    np.testing.assert_array_equal(mixed, mixed_t)
    np.testing.assert_allclose(mixed.sum(axis=1), np.ones(n), rtol=1e-6)
    assert (np.diag(mixed) >= 0.5 - 1e-6).all() and ((mixed > 0).sum(axis=1) <= 2).all()
    np.testing.assert_array_equal(mix(tf.constant([1, 2], tf.int64))[0].numpy(), mixed)


def test_step_maths_compiles_with_xla():
    """Guess, interleave, TSA, masks and losses under jit_compile give the eager result."""
    batch, nclass = 6, 4

    def chain(logits_views, logits, targets, progress):
        guess = maths.guess_label(logits_views, 0.5)
        targets = tf.concat([targets, guess, guess], 0)
        logits = tf.concat(maths.interleave(tf.split(logits, 3), batch), 0)
        logits = tf.concat(maths.interleave(tf.split(logits, 3), batch), 0)
        eta = maths.tsa_threshold('exp_schedule', progress, nclass)
        mask_x = maths.tsa_mask(targets[:batch], tf.nn.softmax(logits[:batch]), eta)
        mask_u = maths.percent_mask(tf.nn.softmax(logits[batch:]), 0.25)
        loss_u = maths.unsupervised_loss(targets[batch:], logits[batch:], mask_u)
        return (
            maths.supervised_loss(targets[:batch], logits[:batch], mask_x) + maths.warmup_weight(75.0, 512, 1) * loss_u
        )

    rng = np.random.RandomState(0)
    args = (
        [rng.normal(size=[batch, nclass]).astype(np.float32) for _ in range(2)],
        rng.normal(size=[3 * batch, nclass]).astype(np.float32),
        np.eye(nclass, dtype=np.float32)[np.arange(batch) % nclass],
        tf.constant(0.5),
    )
    compiled = float(tf.function(chain, jit_compile=True)(*args))
    assert compiled == pytest.approx(float(chain(*args)), rel=1e-5)


# --- The comparison algorithms (docs/algorithms.md) -------------------------------------------


def np_log_softmax(logits):
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def np_vat_normalise(d):
    """VAT's n(d) (docs/algorithms.md#vat), row by row in float64."""
    d = d.astype(np.float64)
    flat = d.reshape(len(d), -1)
    out = np.zeros_like(flat)
    for i, row in enumerate(flat):
        if np.abs(row).max() > 0:
            row = row / np.abs(row).max()
            out[i] = row / np.sqrt(1e-6 + (row**2).sum())
    return out.reshape(d.shape)


def test_ramp():
    assert float(maths.ramp(0, 1000)) == 0.0
    assert float(maths.ramp(200, 1000)) == pytest.approx(0.5)  # 200 / (0.4 * 1000)
    assert float(maths.ramp(tf.constant(400, tf.int64), 1000)) == 1.0
    assert float(maths.ramp(900, 1000)) == 1.0
    assert float(maths.ramp(25, 100, warmup_pos=0.5)) == pytest.approx(0.5)
    assert float(maths.ramp(0, 100, warmup_pos=0)) == 1.0
    assert maths.ramp(3, 10).dtype == tf.float32


def test_consistency_loss_hand_value_and_no_teacher_gradient():
    student = tf.Variable([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]])
    teacher = tf.Variable([[1.0, 0.0, 0.0], [0.5, 0.25, 0.25]])
    with tf.GradientTape() as tape:
        loss = maths.consistency_loss(student, teacher)
    # Squared errors: 0.25 0.25 0 | 0.25 0.0625 0.0625, sum 0.875 over 6 entries.
    assert float(loss) == pytest.approx(0.875 / 6)
    grad_student, grad_teacher = tape.gradient(loss, [student, teacher])
    assert grad_teacher is None
    # d/ds mean (s - t)^2 = 2 (s - t) / 6.
    np.testing.assert_allclose(grad_student.numpy(), [[-1 / 6, 1 / 6, 0], [1 / 6, -1 / 12, -1 / 12]], rtol=1e-6)


def test_vat_normalise_matches_numpy_and_keeps_zero_rows():
    d = np.random.RandomState(1).normal(size=[4, 3, 2, 2]).astype(np.float32)
    d[2] = 0.0
    d[3] *= 1e-9  # tiny gradients normalise like any other
    out = maths.vat_normalise(d).numpy()
    assert out.shape == d.shape and out.dtype == np.float32
    np.testing.assert_allclose(out, np_vat_normalise(d), rtol=1e-5, atol=1e-7)
    norms = np.sqrt((out.reshape(4, -1) ** 2).sum(axis=1))
    np.testing.assert_allclose(norms, [1, 1, 0, 1], atol=1e-5)
    # Hand case: [3, -4] / 4 = [0.75, -1], norm sqrt(1.5625 + 1e-6).
    np.testing.assert_allclose(maths.vat_normalise([[3.0, -4.0]]).numpy(), [[0.75 / 1.25, -1 / 1.25]], rtol=1e-5)


def test_kl_divergence_and_entropy_match_numpy():
    p_logits = LOGITS
    q_logits = LOGITS[:, ::-1] * 0.5
    p, lp, lq = np_softmax(p_logits.astype(np.float64)), np_log_softmax(p_logits), np_log_softmax(q_logits)
    expected = (p * (lp - lq)).sum(axis=1).mean()
    assert float(maths.kl_divergence(p_logits, q_logits)) == pytest.approx(expected, rel=1e-5)
    assert float(maths.kl_divergence(p_logits, p_logits)) == pytest.approx(0.0, abs=1e-6)
    # KL is not symmetric: the first argument is the distribution the expectation runs over.
    assert float(maths.kl_divergence(q_logits, p_logits)) != pytest.approx(expected, rel=1e-3)
    # Hand case: p = [0.5, 0.5], q = [0.2, 0.8]: 0.5 log(2.5) + 0.5 log(0.625).
    hand = 0.5 * math.log(2.5) + 0.5 * math.log(0.625)
    assert float(maths.kl_divergence([[0.0, 0.0]], [[0.0, math.log(4.0)]])) == pytest.approx(hand, rel=1e-5)
    entropy = -(p * lp).sum(axis=1).mean()
    assert float(maths.entropy_from_logits(p_logits)) == pytest.approx(entropy, rel=1e-5)
    assert float(maths.entropy_from_logits([[1.0, 1.0, 1.0]])) == pytest.approx(math.log(3), rel=1e-6)


def test_vat_loss_is_kl_teacher_first_with_teacher_stopped():
    student = tf.Variable([[0.0, 0.0]])  # q = [0.5, 0.5]
    teacher = tf.Variable([[0.0, math.log(4.0)]])  # p = [0.2, 0.8]
    with tf.GradientTape() as tape:
        loss = maths.vat_loss(student, teacher)
    # The VAT paper's LDS: KL(p || q) = 0.2 log(0.2 / 0.5) + 0.8 log(0.8 / 0.5).
    assert float(loss) == pytest.approx(0.2 * math.log(0.4) + 0.8 * math.log(1.6), rel=1e-5)
    grad_student, grad_teacher = tape.gradient(loss, [student, teacher])
    assert grad_teacher is None
    # d/dz of -sum_c p_c log softmax(z)_c = q - p.
    np.testing.assert_allclose(grad_student.numpy(), [[0.3, -0.3]], rtol=1e-5)


def test_kl_gradient_wrt_q_is_the_tape_gradient_of_the_kl():
    p_logits, q_logits = LOGITS, LOGITS[:, ::-1] * 0.5
    q = tf.Variable(q_logits)
    with tf.GradientTape() as tape:
        kl = maths.kl_divergence(p_logits, q)
    expected = tape.gradient(kl, q).numpy()
    np.testing.assert_allclose(maths.kl_gradient_wrt_q(p_logits, q_logits).numpy(), expected, rtol=1e-5, atol=1e-8)


def test_kl_gradient_wrt_q_keeps_a_one_ulp_logit_difference():
    # Two classes, logits [l, 0] and [l + 1 ulp, 0]: the gradient is +-p (1 - p) * ulp / N, ~7e-9,
    # below the float32 resolution of p ~ 0.62 (6e-8), where float32 softmaxes differ by 0 or 1 ulp.
    low = np.float32(0.48906907)
    high = np.nextafter(low, np.float32(1))
    p = 1 / (1 + math.exp(-float(low)))
    step = p * (1 - p) * (float(high) - float(low)) / 2
    p_logits = np.array([[low, 0], [0, 0]], np.float32)
    q_logits = np.array([[high, 0], [0, 0]], np.float32)
    out = maths.kl_gradient_wrt_q(p_logits, q_logits).numpy()
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[step, -step], [0, 0]], rtol=1e-6, atol=0)


def _linear(w):
    """A linear model forward: [N, 2, 3] images -> flatten -> logits [N, K] = x w."""
    return lambda x: tf.reshape(x, [tf.shape(x)[0], -1]) @ w


def test_vat_perturbation_two_class_linear_model_points_along_weights():
    # logits = [x . w, 0]: the gradient of the KL w.r.t. d is w (q_0 - p_0), parallel to w
    # whatever d is, so r = +-eps * w / |w| row by row (up to the 1e-6 of the normalisation). Row 1's d is
    # nearly orthogonal to w: its logit moves by 4 float32 ulps, and its float32 q_0 - p_0 was 1 ulp, or 0
    # with oneDNN's kernels (r = 0) until `kl_gradient_wrt_q` took the difference in float64.
    rng = np.random.RandomState(2)
    w = np.stack([rng.uniform(2, 6, size=6) * rng.choice([-1, 1], 6), np.zeros(6)], axis=1).astype(np.float32)
    x = rng.normal(size=[4, 2, 3]).astype(np.float32) * 0.1
    forward = _linear(w)
    r = maths.vat_perturbation(forward, x, forward(x), tf.constant([5, 6], tf.int64), eps=6.0).numpy()
    assert r.shape == x.shape and r.dtype == np.float32
    flat = r.reshape(4, -1)
    np.testing.assert_allclose(np.sqrt((flat**2).sum(axis=1)), np.full(4, 6.0), rtol=1e-4)
    cosine = flat @ w[:, 0] / (np.linalg.norm(flat, axis=1) * np.linalg.norm(w[:, 0]))
    np.testing.assert_allclose(np.abs(cosine), np.ones(4), rtol=1e-5)
    again = maths.vat_perturbation(forward, x, forward(x), tf.constant([5, 6], tf.int64), eps=6.0).numpy()
    np.testing.assert_array_equal(r, again)


def test_vat_perturbation_matches_numpy_power_iteration():
    # For logits z + d w the gradient of KL(p(z) || p(z + d w)) w.r.t. d is exactly
    # w (softmax(z + d w) - p(z)) per row; xi = 0.1 keeps float32 rounding out of the difference.
    rng = np.random.RandomState(3)
    w = rng.normal(size=[6, 3]).astype(np.float32)
    x = rng.normal(size=[4, 2, 3]).astype(np.float32)
    seed = tf.constant([7, 8], tf.int64)
    forward = _linear(w)
    r = maths.vat_perturbation(forward, x, forward(x), seed, xi=0.1, eps=2.0).numpy()
    d = 0.1 * np_vat_normalise(tf.random.stateless_normal(x.shape, seed).numpy())  # the documented draw
    xf, df = x.reshape(4, -1).astype(np.float64), d.reshape(4, -1)
    z = xf @ w
    g = (np_softmax((xf + df) @ w) - np_softmax(z)) @ w.T
    np.testing.assert_allclose(r.reshape(4, -1), 2.0 * np_vat_normalise(g), rtol=2e-3, atol=1e-5)


def test_vat_step_gradient_treats_r_as_a_constant():
    """Inside the training tape, L_vat's gradient is the one with r fixed (no second order)."""
    rng = np.random.RandomState(4)
    w = tf.Variable(rng.normal(size=[6, 3]).astype(np.float32))
    x = rng.normal(size=[5, 2, 3]).astype(np.float32)
    forward = _linear(w)
    seed = tf.constant([1, 1], tf.int64)
    with tf.GradientTape() as tape:
        z = forward(x)
        r = maths.vat_perturbation(forward, x, z, seed)
        loss = maths.vat_loss(forward(x + r), z) + 0.06 * maths.entropy_from_logits(z)
    grad = tape.gradient(loss, w)
    with tf.GradientTape() as tape:
        z = forward(x)
        loss = maths.vat_loss(forward(x + tf.constant(r)), z) + 0.06 * maths.entropy_from_logits(z)
    np.testing.assert_allclose(grad.numpy(), tape.gradient(loss, w).numpy(), rtol=1e-5, atol=1e-7)
    assert float(tf.reduce_sum(tf.abs(grad))) > 0


def test_pseudo_label_loss_matches_numpy_with_strict_threshold():
    logits = tf.Variable(np.array([[5.0, 0.0, 0.0], [0.0, 1.0, 0.5], [0.0, 0.0, 6.0], [0.0, 0.0, 0.0]], np.float32))
    with tf.GradientTape() as tape:
        loss, mask = maths.pseudo_label_loss(logits, 0.95)
    p = np_softmax(logits.numpy().astype(np.float64))
    # max p per row: 0.9867, 0.4718, 0.9950, 1/3: rows 0 and 2 are above 0.95.
    np.testing.assert_array_equal(mask.numpy(), [1, 0, 1, 0])
    assert mask.dtype == tf.float32
    expected = (-np.log(p[0, 0]) - np.log(p[2, 2])) / 4  # the mean runs over all 4 rows
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    # Gradient: mask_i / N * (p_i - onehot(argmax p_i)); the pseudo-label itself is a constant.
    onehot = np.eye(3)[p.argmax(axis=1)]
    np.testing.assert_allclose(
        tape.gradient(loss, logits).numpy(), np.array([1, 0, 1, 0])[:, None] / 4 * (p - onehot), rtol=1e-4, atol=1e-7
    )
    # Strict: p = 0.5 exactly is not above a threshold of 0.5.
    assert maths.pseudo_label_loss([[0.0, 0.0]], 0.5)[1].numpy().tolist() == [0.0]


def test_ict_mix_reverses_rows_with_beta_lambda():
    n = 5
    u = np.eye(n, dtype=np.float32).reshape(n, 1, 1, n) * np.ones([1, 2, 2, 1], np.float32)
    teacher = tf.Variable(np.eye(n, dtype=np.float32))
    seed = tf.constant([3, 9], tf.int64)
    with tf.GradientTape() as tape:
        mixed_u, mixed_t = maths.ict_mix(u, teacher, 0.5, seed)
    assert mixed_u.shape == (n, 2, 2, n) and mixed_t.shape == (n, n)
    assert tape.gradient(mixed_t, teacher) is None
    lam = maths.beta_lambda(seed, n, 0.5).numpy()
    assert (lam >= 0.5).all()
    # Row i = lam_i e_i + (1 - lam_i) e_(n-1-i); the middle row mixes with itself.
    expected = np.zeros([n, n], np.float32)
    for i in range(n):
        expected[i, i] += lam[i]
        expected[i, n - 1 - i] += 1 - lam[i]
    np.testing.assert_allclose(mixed_t.numpy(), expected, rtol=1e-6, atol=1e-7)
    for a in range(2):
        for b in range(2):
            np.testing.assert_allclose(mixed_u.numpy()[:, a, b, :], expected, rtol=1e-6, atol=1e-7)


def test_mixup_serves_semi_supervised_mixup_within_each_batch():
    """MixUp (docs/algorithms.md#mixup): one call per batch, so every partner comes from the same batch."""
    x = np.eye(8, dtype=np.float32)[:4]  # labelled rows use classes 0-3
    u = np.eye(8, dtype=np.float32)[4:]  # unlabelled rows use classes 4-7
    mixed_x, mixed_lx = maths.mixup(x, x, 0.5, tf.constant([1, 1], tf.int64))
    mixed_u, mixed_lu = maths.mixup(u, u, 0.5, tf.constant([1, 2], tf.int64))
    assert (mixed_lx.numpy()[:, 4:] == 0).all() and (mixed_lu.numpy()[:, :4] == 0).all()
    np.testing.assert_array_equal(mixed_x.numpy(), mixed_lx.numpy())
    np.testing.assert_array_equal(mixed_u.numpy(), mixed_lu.numpy())


def test_fixmatch_loss_matches_numpy():
    weak = tf.Variable(np.array([[4.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 1.0, 4.0], [0.0, 5.0, 0.0]], np.float32))
    strong = tf.Variable(np.array([[1.0, 2.0, 0.0], [0.0, 3.0, 0.0], [0.5, 0.5, 0.5], [0.0, 0.0, 1.0]], np.float32))
    with tf.GradientTape() as tape:
        loss, mask, labels = maths.fixmatch_loss(weak, strong, 0.9)
    # max q: 0.9479, 1/3, 0.9362, 0.9867 -> rows 0, 2, 3 confident; labels 0, 0 (first max), 2, 1.
    np.testing.assert_array_equal(mask.numpy(), [1, 0, 1, 1])
    assert labels.dtype == tf.int64
    np.testing.assert_array_equal(labels.numpy(), [0, 0, 2, 1])
    log_s = np_log_softmax(strong.numpy().astype(np.float64))
    expected = -(log_s[0, 0] + log_s[2, 2] + log_s[3, 1]) / 4
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    grad_weak, grad_strong = tape.gradient(loss, [weak, strong])
    assert grad_weak is None
    s = np.exp(log_s)
    onehot = np.eye(3)[[0, 0, 2, 1]]
    np.testing.assert_allclose(grad_strong.numpy(), np.array([1, 0, 1, 1])[:, None] / 4 * (s - onehot), rtol=1e-4)
    # >=: a weak prediction exactly at the confidence counts.
    assert maths.fixmatch_loss([[0.0, 0.0]], [[0.0, 0.0]], 0.5)[1].numpy().tolist() == [1.0]


def test_l2_penalty():
    kernels = [tf.Variable([[1.0, 2.0], [3.0, 4.0]]), tf.Variable([-1.0])]
    assert float(maths.l2_penalty(kernels)) == pytest.approx(0.5 * (1 + 4 + 9 + 16 + 1))
    assert float(maths.l2_penalty([])) == 0.0
    with tf.GradientTape() as tape:
        penalty = maths.l2_penalty(kernels)
    np.testing.assert_array_equal(tape.gradient(penalty, kernels[0]).numpy(), [[1, 2], [3, 4]])


def test_learning_rate_schedules():
    assert float(maths.learning_rate(0.03, 'constant', 0.7)) == pytest.approx(0.03)
    # cos(7 pi k / (16 K)) at k = 0, K / 2, K.
    assert float(maths.learning_rate(0.03, 'cosine', 0.0)) == pytest.approx(0.03)
    assert float(maths.learning_rate(0.03, 'cosine', 0.5)) == pytest.approx(0.03 * 0.773010453, rel=1e-6)
    assert float(maths.learning_rate(0.03, 'cosine', tf.constant(1.0))) == pytest.approx(0.03 * 0.195090322, rel=1e-6)
    assert float(maths.learning_rate(0.03, 'cosine', 1.5)) == pytest.approx(0.03 * 0.195090322, rel=1e-6)
    assert maths.learning_rate(0.03, 'cosine', 0.5).dtype == tf.float32
    with pytest.raises(ValueError, match='constant, cosine'):
        maths.learning_rate(0.03, 'step', 0.5)


def test_comparison_maths_compiles_with_xla():
    """Every new function traces under jit_compile and gives the eager result (VAT: its norm)."""
    rng = np.random.RandomState(5)
    w = rng.normal(size=[6, 3]).astype(np.float32)
    forward = _linear(w)

    def chain(x, logits, teacher, seed, images_seen):
        r = maths.vat_perturbation(forward, x, logits, seed)
        mixed_u, mixed_t = maths.ict_mix(x, teacher, 0.5, seed)
        pl_loss, pl_mask = maths.pseudo_label_loss(logits, 0.5)
        fm_loss, fm_mask, labels = maths.fixmatch_loss(logits, teacher, 0.5)
        deterministic = [
            maths.ramp(images_seen, 1000),
            maths.consistency_loss(tf.nn.softmax(logits), teacher),
            maths.vat_normalise(x),
            maths.kl_divergence(logits, teacher),
            maths.entropy_from_logits(logits),
            maths.vat_loss(forward(x + 0.1), logits),
            pl_loss,
            pl_mask,
            fm_loss,
            fm_mask,
            labels,
            maths.l2_penalty([w, x]),
            maths.learning_rate(0.03, 'cosine', tf.cast(images_seen, tf.float32) / 1000.0),
        ]
        return deterministic, tf.sqrt(tf.reduce_sum(tf.square(r), axis=[1, 2])), mixed_u, mixed_t

    x = rng.normal(size=[4, 2, 3]).astype(np.float32)
    args = (x, forward(x) * 3, np_softmax(rng.normal(size=[4, 3])).astype(np.float32), tf.constant([1, 2], tf.int64))
    args += (tf.constant(100, tf.int64),)
    eager, eager_norms, _, _ = chain(*args)
    compiled, norms, mixed_u, mixed_t = tf.function(chain, jit_compile=True)(*args)
    for a, b in zip(compiled, eager):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(norms.numpy(), np.full(4, 6.0), rtol=1e-3)
    np.testing.assert_allclose(eager_norms.numpy(), np.full(4, 6.0), rtol=1e-3)
    np.testing.assert_allclose(mixed_t.numpy().sum(axis=1), np.ones(4), rtol=1e-5)
    assert mixed_u.shape == x.shape
