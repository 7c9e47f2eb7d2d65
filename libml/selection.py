"""Which unlabelled rows count, and how much, for FixMatch's successors: FlexMatch, FreeMatch, SoftMatch
and UDA, as pure TensorFlow functions (docs/algorithms.md#flexmatch, #freematch, #softmatch, #uda).

Every function works eagerly and inside `tf.function` (and XLA), casts its inputs to float32 and keeps no
Python state. State carried across steps is a tensor (or a NamedTuple of tensors) passed in and returned:
the loop holds it in checkpointed `tf.Variable`s and assigns the returned values, so resume stays exact.
Shapes: N rows of the unlabelled batch (uratio * B), C classes, M images in the unlabelled file.

Loss functions return a `Selected(loss, mask, labels, monitors)`: the scalar unlabelled loss (mean over
ALL N rows, rows left out counting 0, as `maths.fixmatch_loss`), the float32 [N] mask or weight, the int64
[N] pseudo-labels, and a dict of float32 monitors (`mask`: mean mask or weight; thresholds where the
algorithm has them).

Sources checked (commit in brackets; "file:line" below refers to these):
USB = microsoft/Semi-supervised-learning [1ef4cbe], TorchSSL = TorchSSL/TorchSSL [f26e1d4] (FlexMatch's
authors' release), UDA = google-research/uda [960684e]. FreeMatch's and SoftMatch's authors released their
code in USB. Where the project's first summary of these methods differed from the papers and code, the code
is followed and the docstring says so.
"""

from typing import NamedTuple

import tensorflow as tf


class Selected(NamedTuple):
    """One step's unlabelled loss: loss scalar, mask or weight [N], pseudo-labels int64 [N], monitors dict."""

    loss: tf.Tensor
    mask: tf.Tensor
    labels: tf.Tensor
    monitors: dict


def _probs(logits):
    """softmax of float32 logits, no gradient."""
    return tf.stop_gradient(tf.nn.softmax(tf.cast(logits, tf.float32)))


def _masked_ce(strong_logits, labels, weight):
    """mean over ALL rows of weight_i * CE(labels_i, strong_i) (hard labels), like `maths.fixmatch_loss`."""
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=tf.cast(strong_logits, tf.float32))
    return tf.reduce_mean(weight * ce)


def scatter_last(state, indices, values, write):
    """state[indices[j]] = values[j] for every row j with write[j]; when an index repeats, the LAST written row wins.

    state: [M] tensor; indices: int [n] positions in [0, M); values: [n] of state's dtype; write: bool [n].
    Repeated indices among the written rows are resolved before the scatter (a row is dropped when a later
    written row has the same index), so the result is deterministic on every device (a plain scatter with
    repeated indices is not). Costs O(n^2) booleans, n = batch rows. Returns the new [M] tensor.
    """
    indices = tf.cast(indices, tf.int64)
    write = tf.cast(write, tf.bool)
    n = tf.shape(indices)[0]
    position = tf.range(n)
    later_same = tf.equal(indices[:, None], indices[None, :]) & write[None, :] & (position[None, :] > position[:, None])
    keep = write & ~tf.reduce_any(later_same, axis=1)
    rows = tf.where(keep)[:, 0]
    return tf.tensor_scatter_nd_update(state, tf.gather(indices, rows)[:, None], tf.gather(values, rows))


# --- FlexMatch (Zhang et al. 2021) -----------------------------------------------------------------------


def flexmatch_init(size):
    """FlexMatch's state: the selected label of every unlabelled image, -1 = none yet. Returns int64 [M]."""
    return tf.fill([size], tf.constant(-1, tf.int64))


def flexmatch_learning_effect(sel, nclass, warmup=True):
    """Learning effect beta_c of each class from the per-image selected labels.

    sel: int [M] with values in {-1, 0, ..., C-1}; nclass: C. sigma_c = #{i: sel_i = c}, unused = #{i: sel_i = -1}.
    warmup=True (threshold warm-up, the default): beta_c = sigma_c / max(max_c sigma_c, unused), so while most
    images are unused every beta stays small; warmup=False: beta_c = sigma_c / max_c sigma_c.
    (USB flexmatch/utils.py:25-35, TorchSSL models/flexmatch/flexmatch.py:146-156.) A zero denominator
    (warmup=False and nothing selected) gives beta = 0, as the code's initial zeros.
    Departure, kept on purpose: when every image holds the same value the code skips the update and keeps
    the previous beta (utils.py:26); this function, being a function of `sel` only, returns the formula's
    value there (beta = 0 everywhere when all are -1, as the code's initial zeros; 1 for the one class and 0
    elsewhere when all images selected one class). Returns float32 [C].
    """
    sel = tf.cast(sel, tf.int32)
    ids = tf.where(sel >= 0, sel, nclass)
    counts = tf.math.unsorted_segment_sum(tf.ones_like(sel, tf.float32), ids, nclass + 1)
    sigma, unused = counts[:nclass], counts[nclass]
    denominator = tf.reduce_max(sigma)
    if warmup:
        denominator = tf.maximum(denominator, unused)
    return tf.math.divide_no_nan(sigma, denominator)


def flexmatch_thresholds(sel, nclass, threshold=0.95, warmup=True):
    """Class thresholds T_c = threshold * M(beta_c), M(x) = x / (2 - x) (the 'convex' mapping, USB utils.py:53).

    sel: int [M]; nclass: C; threshold: tau (0.95). Returns float32 [C] in [0, tau].
    """
    beta = flexmatch_learning_effect(sel, nclass, warmup)
    return tf.cast(threshold, tf.float32) * beta / (2.0 - beta)


def flexmatch_loss(weak_logits, strong_logits, sel, threshold=0.95, warmup=True):
    """FlexMatch's unlabelled loss: FixMatch with class-wise flexible thresholds.

    weak_logits, strong_logits: [N, C] (f(w), f(s)); sel: int [M] the state BEFORE this step's update (the
    code computes the thresholds, then the mask, then writes `sel`: USB utils.py:53-61). q = sg softmax(weak),
    y_i = argmax q_i; mask_i = [max q_i >= T_{y_i}] with T from `flexmatch_thresholds`; loss = mean over all
    N rows of mask_i * CE(y_i, strong_i). `>=` as the code (USB utils.py:53, TorchSSL flexmatch_utils.py:44);
    the project's first summary wrote `>`. Monitors: mask (share), threshold (mean of T_c), class_thresholds [C].
    Returns Selected(loss, mask [N], labels int64 [N], monitors).
    """
    q = _probs(weak_logits)
    nclass = q.shape[-1]
    thresholds = flexmatch_thresholds(sel, nclass, threshold, warmup)
    labels = tf.argmax(q, axis=-1, output_type=tf.int64)
    mask = tf.cast(tf.reduce_max(q, axis=-1) >= tf.gather(thresholds, labels), tf.float32)
    monitors = {
        'mask': tf.reduce_mean(mask),
        'threshold': tf.reduce_mean(thresholds),
        'class_thresholds': thresholds,
    }
    return Selected(_masked_ce(strong_logits, labels, mask), mask, labels, monitors)


def flexmatch_update(sel, indices, probs, threshold=0.95):
    """FlexMatch's state update: images predicted with confidence >= tau record their predicted class.

    sel: int64 [M]; indices: int [N] positions of the batch rows in the unlabelled file; probs: [N, C] weak-view
    probabilities (no gradient); threshold: tau. sel[indices_j] = argmax probs_j where max probs_j >= tau
    (USB utils.py:55-60, `>=`); the other entries are unchanged. An index repeated in the batch takes the
    value of its LAST confident row (`scatter_last`). Returns the new int64 [M].
    """
    probs = tf.stop_gradient(tf.cast(probs, tf.float32))
    confident = tf.reduce_max(probs, axis=-1) >= tf.cast(threshold, tf.float32)
    labels = tf.argmax(probs, axis=-1, output_type=tf.int64)
    return scatter_last(tf.cast(sel, tf.int64), indices, labels, confident)


# --- FreeMatch (Wang et al. 2023) ------------------------------------------------------------------------


class FreeMatchState(NamedTuple):
    """FreeMatch's self-adaptive thresholding state (USB freematch/utils.py:19-21, all start at 1/C)."""

    tau: tf.Tensor  # [] global threshold: EMA of the batch mean of max q
    p: tf.Tensor  # [C] EMA of the batch mean of q (local, class-wise)
    hist: tf.Tensor  # [C] EMA of the normalised histogram of argmax q


def freematch_init(nclass):
    """Initial FreeMatchState: tau = 1/C, p = hist = 1/C everywhere."""
    uniform = tf.fill([nclass], 1.0 / nclass)
    return FreeMatchState(tf.constant(1.0 / nclass), uniform, uniform)


def freematch_update(state, probs, momentum=0.999):
    """FreeMatch's EMA update from a batch of weak-view probabilities (USB freematch/utils.py:29-39).

    state: FreeMatchState; probs: [N, C] = sg softmax(f(w)); momentum: m (0.999, USB freematch.py:149).
    tau <- m tau + (1 - m) mean_i max_c q_ic (the EMA of the batch MEAN of max q, not a quantile:
    use_quantile False in every classic_cv config); p <- m p + (1 - m) mean_i q_i;
    hist <- m hist + (1 - m) histogram(argmax q) / N. No clipping (clip_thresh False except SVHN).
    The code updates BEFORE masking, with the same batch (utils.py:61 then 63-65; the paper's
    Algorithm 1 the same): call this first and pass the new state to `freematch_loss`.
    Returns the new FreeMatchState.
    """
    q = tf.stop_gradient(tf.cast(probs, tf.float32))
    m = tf.cast(momentum, tf.float32)
    nclass = q.shape[-1]
    hist = tf.reduce_mean(tf.one_hot(tf.argmax(q, axis=-1), nclass), axis=0)
    return FreeMatchState(
        m * tf.cast(state.tau, tf.float32) + (1.0 - m) * tf.reduce_mean(tf.reduce_max(q, axis=-1)),
        m * tf.cast(state.p, tf.float32) + (1.0 - m) * tf.reduce_mean(q, axis=0),
        m * tf.cast(state.hist, tf.float32) + (1.0 - m) * hist,
    )


def freematch_thresholds(state):
    """Class thresholds T_c = tau * p_c / max_c p_c (USB freematch/utils.py:64-65). Returns float32 [C]."""
    p = tf.cast(state.p, tf.float32)
    return tf.cast(state.tau, tf.float32) * p / tf.reduce_max(p)


def freematch_loss(weak_logits, strong_logits, state):
    """FreeMatch's unlabelled loss: FixMatch with self-adaptive class thresholds.

    weak_logits, strong_logits: [N, C]; state: the FreeMatchState AFTER `freematch_update` with this batch.
    q = sg softmax(weak), y = argmax q; mask_i = [max q_i >= T_{y_i}] (`>=`, USB utils.py:65); loss = mean over
    all N rows of mask_i * CE(y_i, strong_i). The fairness term is `freematch_fairness_loss`.
    Monitors: mask (share), threshold (tau), class_thresholds [C].
    Returns Selected(loss, mask [N], labels int64 [N], monitors).
    """
    q = _probs(weak_logits)
    thresholds = freematch_thresholds(state)
    labels = tf.argmax(q, axis=-1, output_type=tf.int64)
    mask = tf.cast(tf.reduce_max(q, axis=-1) >= tf.gather(thresholds, labels), tf.float32)
    monitors = {
        'mask': tf.reduce_mean(mask),
        'threshold': tf.cast(state.tau, tf.float32),
        'class_thresholds': thresholds,
    }
    return Selected(_masked_ce(strong_logits, labels, mask), mask, labels, monitors)


def freematch_fairness_loss(strong_logits, mask, state):
    """FreeMatch's self-adaptive fairness term L_f (paper Eq. 11; USB freematch/freematch.py:16-44, 113-116).

    strong_logits: [N, C] = f(s), gradients flow; mask: [N] the `freematch_loss` mask; state: the updated
    FreeMatchState. Over the masked rows only: r = softmax(strong) (gradient flows), h_s = histogram of
    argmax r over those rows / their count (no gradient); a = SumNorm(p / hist), b = SumNorm(mean_i r_i / h_s),
    with 1/0 read as 0 (classes no masked row predicts get b_c = 0); L_f = sum_c a_c log(b_c + 1e-12).
    This is MINUS a cross-entropy (<= 0): adding w_f * L_f to the loss and minimising it pushes b AWAY from
    a, i.e. towards more diverse strong-view predictions; the paper writes L_f = -H(a, b) and the authors
    confirm the sign is intended (USB issue #182). 0 when no row is masked (freematch.py:113-116).
    Weight w_f: `ent_loss_ratio`, 0.001 in every USB classic_cv config (e.g. config/classic_cv/freematch/
    freematch_cifar10_40_0.yaml), 0.01 only as the argparse default (freematch.py:150). Returns a float32 scalar.
    """
    logits = tf.cast(strong_logits, tf.float32)
    mask = tf.stop_gradient(tf.cast(mask, tf.float32))
    nclass = logits.shape[-1]
    count = tf.reduce_sum(mask)
    r = tf.nn.softmax(logits)
    mean_r = tf.reduce_sum(mask[:, None] * r, axis=0) / tf.maximum(count, 1.0)
    hist_s = tf.reduce_sum(mask[:, None] * tf.one_hot(tf.argmax(r, axis=-1), nclass), axis=0) / tf.maximum(count, 1.0)
    hist_s = tf.stop_gradient(hist_s)

    def sum_norm(x):  # 0 / 0 (no masked row) gives 0, so the unused branch of the final `where` has no NaN gradient
        return tf.math.divide_no_nan(x, tf.reduce_sum(x))

    a = sum_norm(tf.cast(state.p, tf.float32) * tf.math.divide_no_nan(1.0, tf.cast(state.hist, tf.float32)))
    b = sum_norm(mean_r * tf.math.divide_no_nan(1.0, hist_s))
    loss = tf.reduce_sum(tf.stop_gradient(a) * tf.math.log(b + 1e-12))
    return tf.where(count > 0, loss, 0.0)


# --- SoftMatch (Chen et al. 2023) ------------------------------------------------------------------------


class SoftMatchState(NamedTuple):
    """SoftMatch's state: alignment EMA, the truncated Gaussian's mean and variance (USB softmatch/utils.py:25-26)."""

    pbar: tf.Tensor  # [C] EMA of the batch mean of q; all zeros = not yet set
    mu: tf.Tensor  # [] EMA of the batch mean of max q' (starts at 1/C)
    var: tf.Tensor  # [] EMA of the batch variance of max q' (starts at 1)


def softmatch_init(nclass):
    """Initial SoftMatchState: pbar unset (zeros: the first update sets it to the batch mean), mu = 1/C, var = 1."""
    return SoftMatchState(tf.zeros([nclass]), tf.constant(1.0 / nclass), tf.constant(1.0))


def softmatch_align(probs, pbar):
    """Uniform alignment q' = Normalise(q * (1/C + 1e-6) / (pbar + 1e-6)) (USB hooks/dist_align.py:31-32).

    probs: [N, C]; pbar: [C]. Returns float32 [N, C] rows summing to 1, no gradient.
    """
    q = tf.stop_gradient(tf.cast(probs, tf.float32))
    nclass = q.shape[-1]
    aligned = q * (1.0 / nclass + 1e-6) / (tf.cast(pbar, tf.float32) + 1e-6)
    return aligned / tf.reduce_sum(aligned, axis=-1, keepdims=True)


def softmatch_update(state, probs, momentum=0.999):
    """SoftMatch's EMA update from a batch of weak-view probabilities.

    state: SoftMatchState; probs: [N, C] = sg softmax(f(w)); momentum: m (0.999, USB softmatch.py:143).
    pbar <- m pbar + (1 - m) mean_i q_i, or the batch mean itself at the first update (pbar all zeros;
    USB dist_align.py:48-51 starts from None); then q' = `softmatch_align`(q, new pbar) and
    mu <- m mu + (1 - m) mean_i max q'_i, var <- m var + (1 - m) var_i(max q'_i) with the UNBIASED batch
    variance (divides by N - 1: torch.var(unbiased=True), USB softmatch/utils.py:37-40; N = 1 divides by 1
    instead of giving NaN). The code updates before weighting with the same batch (dist_align.py:28,
    utils.py:66): call this first and pass the new state to `softmatch_loss`. Returns the new SoftMatchState.
    """
    q = tf.stop_gradient(tf.cast(probs, tf.float32))
    m = tf.cast(momentum, tf.float32)
    batch_mean = tf.reduce_mean(q, axis=0)
    pbar = tf.cast(state.pbar, tf.float32)
    pbar = tf.where(tf.reduce_sum(pbar) > 0, m * pbar + (1.0 - m) * batch_mean, batch_mean)
    top = tf.reduce_max(softmatch_align(q, pbar), axis=-1)
    n = tf.cast(tf.shape(top)[0], tf.float32)
    mean = tf.reduce_mean(top)
    var = tf.reduce_sum(tf.square(top - mean)) / tf.maximum(n - 1.0, 1.0)
    return SoftMatchState(
        pbar,
        m * tf.cast(state.mu, tf.float32) + (1.0 - m) * mean,
        m * tf.cast(state.var, tf.float32) + (1.0 - m) * var,
    )


def softmatch_weight(aligned_probs, mu, var, n_sigma=2.0):
    """Truncated Gaussian weight lambda_i = exp(-min(max q'_i - mu, 0)^2 / (2 var / n_sigma^2)) (USB utils.py:76).

    aligned_probs: [N, C] q'; mu, var: scalars; n_sigma: 2. Rows at or above mu weigh 1. Returns float32 [N].
    """
    top = tf.reduce_max(tf.cast(aligned_probs, tf.float32), axis=-1)
    below = tf.minimum(top - tf.cast(mu, tf.float32), 0.0)
    n_sigma = tf.cast(n_sigma, tf.float32)
    return tf.exp(-tf.square(below) / (2.0 * tf.cast(var, tf.float32) / tf.square(n_sigma)))


def softmatch_loss(weak_logits, strong_logits, state, n_sigma=2.0):
    """SoftMatch's unlabelled loss: every row counts, weighted by how confident it is against the running mean.

    weak_logits, strong_logits: [N, C]; state: the SoftMatchState AFTER `softmatch_update` with this batch.
    q = sg softmax(weak); q' = `softmatch_align`(q, pbar); lambda = `softmatch_weight`(q', mu, var, n_sigma);
    loss = mean over all N rows of lambda_i * CE(argmax q_i, strong_i).
    Departure from the project's first summary (which took argmax q'): the pseudo-label is the argmax of the
    UNALIGNED q; the alignment only sets the weight (USB softmatch.py:93-98: "uniform alignment in softmatch do
    not use aligned probs for generating pseudo labels"). Monitors: mask (mean weight), mu, var.
    Returns Selected(loss, weight [N], labels int64 [N], monitors).
    """
    q = _probs(weak_logits)
    weight = softmatch_weight(softmatch_align(q, state.pbar), state.mu, state.var, n_sigma)
    labels = tf.argmax(q, axis=-1, output_type=tf.int64)
    monitors = {
        'mask': tf.reduce_mean(weight),
        'mu': tf.cast(state.mu, tf.float32),
        'var': tf.cast(state.var, tf.float32),
    }
    return Selected(_masked_ce(strong_logits, labels, weight), weight, labels, monitors)


# --- UDA (Xie et al. 2019/2020) --------------------------------------------------------------------------


def uda_loss(weak_logits, strong_logits, confidence=0.8, temperature=0.4):
    """UDA's consistency loss: sharpened weak-view targets taught to the strong view, where confident.

    weak_logits, strong_logits: [N, C] (f(w) = the 'ori' view, f(s) the augmented one); confidence: 0.8;
    temperature: 0.4. q = softmax(weak); mask_i = [max q_i > confidence] (strict, on the UNSHARPENED q);
    target = sg softmax(weak / temperature); loss = mean over all N rows of mask_i * KL(target_i ||
    softmax(strong_i)). Authors' code: UDA image/main.py:352-375 (temperature, KL, `tf.greater` mask),
    main.py:384 (mean over all rows), scripts/run_cifar10_gpu.sh (--uda_confidence_thresh=0.8
    --uda_softmax_temp=0.4, unsup_ratio 7, batch 64). USB's uda.py:89-101 differs: `>=`, and its targets skip
    the temperature (PseudoLabelingHook returns the probabilities unchanged when softmax=False,
    hooks/pseudo_label.py:46-51; CE instead of KL, same gradient); the authors' version is followed here.
    Labels (for the pseudo-label accuracy monitor) are argmax q. Monitors: mask (share).
    Returns Selected(loss, mask [N], labels int64 [N], monitors).
    """
    weak = tf.stop_gradient(tf.cast(weak_logits, tf.float32))
    q = tf.nn.softmax(weak)
    mask = tf.cast(tf.reduce_max(q, axis=-1) > tf.cast(confidence, tf.float32), tf.float32)
    target_logits = weak / tf.cast(temperature, tf.float32)
    target = tf.nn.softmax(target_logits)
    kl = tf.reduce_sum(
        target * (tf.nn.log_softmax(target_logits) - tf.nn.log_softmax(tf.cast(strong_logits, tf.float32))), axis=-1
    )
    labels = tf.argmax(q, axis=-1, output_type=tf.int64)
    return Selected(tf.reduce_mean(mask * kl), mask, labels, {'mask': tf.reduce_mean(mask)})
