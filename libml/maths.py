"""The maths of every algorithm (docs/algorithms.md) as pure TensorFlow functions: losses, MixUp, TSA, EMA,
VAT, ICT, FixMatch, L2 penalty and learning-rate schedules.

Every function works eagerly and inside `tf.function` (and XLA), returns float32 tensors
(`fixmatch_loss` also returns int64 labels) and keeps no Python state. Randomness is stateless:
the same seed gives the same draw on a given device (XLA's generator differs from the eager one,
so a jit-compiled step draws other values).
Shapes: N rows, K classes; `[N, ...]` is any batch of images.
"""

import math

import tensorflow as tf

TSA_SCHEDULES = ('none', 'linear_schedule', 'exp_schedule', 'log_schedule')
LR_SCHEDULES = ('constant', 'cosine')


def sharpen(p, temperature):
    """Temperature sharpening of probabilities: p^(1/T) / sum_j p_j^(1/T).

    p: [N, K] probabilities; temperature: scalar T > 0. Returns [N, K] rows summing to 1.
    """
    p = tf.cast(p, tf.float32)
    powered = tf.pow(p, 1.0 / tf.cast(temperature, tf.float32))
    return powered / tf.reduce_sum(powered, axis=-1, keepdims=True)


def guess_label(logits_views, temperature):
    """Label guess for unlabelled images: sharpened mean softmax over augmented views.

    logits_views: list of nu tensors [B, K] (one per view of the same B images).
    Returns [B, K] targets carrying no gradient.
    """
    probs = [tf.nn.softmax(tf.cast(logits, tf.float32)) for logits in logits_views]
    return tf.stop_gradient(sharpen(tf.add_n(probs) / len(probs), temperature))


def stateless_gamma(seed, n, alpha, tries=16):
    """n draws of Gamma(alpha, 1), alpha > 0, from int seed [2]; XLA-compilable.

    Marsaglia-Tsang squeeze-rejection with `tries` proposals per draw evaluated at once (each is
    accepted with probability > 0.95, so all fail with probability < 1e-20; the draw then falls
    back to the distribution's centre d). alpha < 1 uses Gamma(alpha + 1) * U^(1 / alpha).
    (`tf.random.stateless_gamma` has no XLA kernel, which `--xla` needs.) Returns [n] float32.
    """
    alpha = tf.cast(alpha, tf.float32)
    seeds = tf.random.experimental.stateless_split(seed, 3)
    boosted = tf.where(alpha < 1.0, alpha + 1.0, alpha)
    d = boosted - 1.0 / 3.0
    c = 1.0 / tf.sqrt(9.0 * d)
    x = tf.random.stateless_normal([tries, n], seeds[0])
    v = tf.maximum(1.0 + c * x, 0.0) ** 3
    log_u = tf.math.log(tf.random.stateless_uniform([tries, n], seeds[1], minval=1e-30, maxval=1.0))
    accept = (v > 0.0) & (log_u < 0.5 * tf.square(x) + d - d * v + d * tf.math.log(tf.maximum(v, 1e-30)))
    first = tf.argmax(tf.cast(accept, tf.int32), axis=0)
    chosen = tf.gather(tf.transpose(d * v), first, axis=1, batch_dims=1)
    sample = tf.where(tf.reduce_any(accept, axis=0), chosen, d)
    boost = tf.random.stateless_uniform([n], seeds[2], minval=1e-30, maxval=1.0) ** (1.0 / alpha)
    return tf.where(alpha < 1.0, sample * boost, sample)


def beta_lambda(seed, n, beta):
    """MixUp weights lam = max(l, 1 - l) with l ~ Beta(beta, beta), drawn statelessly.

    seed: int32/int64 [2]; n: number of rows; beta: concentration > 0. l = g1 / (g1 + g2) with
    g1, g2 ~ Gamma(beta) independent. Returns [n] float32 in [0.5, 1].
    """
    seeds = tf.random.experimental.stateless_split(seed, 2)
    g1 = stateless_gamma(seeds[0], n, beta)
    g2 = stateless_gamma(seeds[1], n, beta)
    lam = g1 / tf.maximum(g1 + g2, 1e-30)
    return tf.maximum(lam, 1.0 - lam)


def _broadcast_rows(values, like):
    """values [N] -> [N, 1, ..., 1] with the rank of `like`."""
    return tf.reshape(values, tf.concat([tf.shape(values), tf.ones([tf.rank(like) - 1], tf.int32)], 0))


def mixup(x, targets, beta, seed):
    """MixUp of every row with a random partner row drawn within the batch it is given.

    x: [N, ...] float; targets: [N, K]; beta: Beta concentration; seed: int [2]. One
    permutation pi of the N rows and one lam_i in [0.5, 1] per row give
    row i = lam_i * row_i + (1 - lam_i) * row_pi(i), with the same lam_i and pi(i) for x
    and targets. Returns (mixed_x [N, ...], mixed_targets [N, K]).

    RealMix/MixMatch (docs/algorithms.md#realmix, mode xxy.yxy): one call on the stacked [x; u_1; u_2].
    Semi-supervised MixUp (docs/algorithms.md#mixup): two calls with different seeds, one on (x, onehot(l)),
    one on (u_1, stop_gradient(softmax(f(u_1)))), so partners stay within each batch.
    Gradients flow through `targets`: the caller passes stop-gradient targets.
    """
    x = tf.cast(x, tf.float32)
    targets = tf.cast(targets, tf.float32)
    n = tf.shape(x)[0]
    seeds = tf.random.experimental.stateless_split(seed, 2)
    pi = tf.argsort(tf.random.stateless_uniform([n], seeds[0]))
    lam = beta_lambda(seeds[1], n, beta)

    def mix(v):
        w = _broadcast_rows(lam, v)
        return w * v + (1.0 - w) * tf.gather(v, pi)

    return mix(x), mix(targets)


def interleave_offsets(batch, nu):
    """Row offsets cutting a batch of `batch` rows into nu + 1 slices (larger ones last).

    Returns a list of nu + 2 python ints from 0 to batch.
    """
    sizes = [batch // (nu + 1)] * (nu + 1)
    for i in range(batch - sum(sizes)):
        sizes[-1 - i] += 1
    offsets = [0]
    for size in sizes:
        offsets.append(offsets[-1] + size)
    return offsets


def interleave(xy, batch):
    """Exchanges row slices between batches so that every batch holds rows of every source.

    xy: list of n = nu + 1 tensors, each [batch, ...], cut into n slices by
    `interleave_offsets`. Slice i of output batch j is slice i of input batch (i - j) mod n:
    batch 0 is MixMatch's interleaved batch (slice i from source i), and for each slice the
    exchange j <-> (i - j) mod n is a pairing, so the operation is its own inverse: apply it
    again to the outputs (e.g. the logits) to undo it. Returns a list of n tensors.
    """
    n = len(xy)
    offsets = interleave_offsets(batch, n - 1)
    slices = [[v[offsets[i] : offsets[i + 1]] for i in range(n)] for v in xy]
    return [tf.concat([slices[(i - j) % n][i] for i in range(n)], axis=0) for j in range(n)]


def tsa_threshold(schedule, progress, nclass):
    """Training-signal-annealing threshold eta = alpha(r) (1 - 1/K) + 1/K.

    schedule: 'linear_schedule' (alpha = r), 'exp_schedule' (exp(5 (r - 1))),
    'log_schedule' (1 - exp(-5 r)), the short names 'linear'/'exp'/'log', or 'none'
    (returns 1.0: nothing is masked). progress: scalar r in [0, 1]; nclass: K.
    Returns a float32 scalar.
    """
    name = schedule[: -len('_schedule')] if schedule.endswith('_schedule') else schedule
    r = tf.cast(progress, tf.float32)
    if name == 'none':
        return tf.constant(1.0)
    if name == 'linear':
        alpha = r
    elif name == 'exp':
        alpha = tf.exp(5.0 * (r - 1.0))
    elif name == 'log':
        alpha = 1.0 - tf.exp(-5.0 * r)
    else:
        raise ValueError(f'unknown TSA schedule {schedule!r}: expected one of {", ".join(TSA_SCHEDULES)}')
    return alpha * (1.0 - 1.0 / nclass) + 1.0 / nclass


def tsa_mask(targets, probs, threshold):
    """Rows the model is not yet confident about: 1 where sum_c t_c p_c < eta, else 0.

    targets: [N, K] soft targets; probs: [N, K] model probabilities; threshold: scalar eta.
    For one-hot targets this is UDA's rule p_y < eta. Returns float32 [N], no gradient.
    """
    agreement = tf.reduce_sum(tf.cast(targets, tf.float32) * tf.cast(probs, tf.float32), axis=-1)
    return tf.stop_gradient(tf.cast(agreement < tf.cast(threshold, tf.float32), tf.float32))


def _masked_mean(values, mask, per_row):
    """mean(values) without mask, else sum(mask * values) / max(sum(mask) * per_row, 1)."""
    if mask is None:
        return tf.reduce_mean(values) / per_row
    mask = tf.cast(mask, tf.float32)
    return tf.reduce_sum(mask * values) / tf.maximum(tf.reduce_sum(mask) * per_row, 1.0)


def supervised_loss(targets, logits, mask=None):
    """Softmax cross-entropy against soft targets.

    targets, logits: [N, K]; mask: optional [N] of 0/1. Returns a scalar: the mean over rows,
    or the mean over kept rows (sum(mask * ce) / max(sum(mask), 1)).
    """
    ce = tf.nn.softmax_cross_entropy_with_logits(
        labels=tf.cast(targets, tf.float32), logits=tf.cast(logits, tf.float32)
    )
    return _masked_mean(ce, mask, 1.0)


def percent_mask(probs, percent):
    """Out-of-distribution mask: drops the floor(p * N) least confident rows.

    probs: [N, K] probabilities (no gradient flows); percent: p in [0, 1] (python float or
    scalar tensor), p < 0 keeps every row. Confidence m_i = max_c probs_ic. Rows are ranked by
    m ascending with a stable sort, so among equal confidences the LOWER index is dropped first.
    A tolerance of 1e-4 rows absorbs float rounding of p (0.29 * 100 counts as 29).
    Returns float32 [N] of 0/1 with exactly N - floor(p * N) ones (all zeros at p = 1).
    """
    confidence = tf.reduce_max(tf.stop_gradient(tf.cast(probs, tf.float32)), axis=-1)
    n = tf.shape(confidence)[0]
    drop = tf.floor(tf.cast(percent, tf.float64) * tf.cast(n, tf.float64) + 1e-4)
    drop = tf.cast(tf.clip_by_value(drop, 0.0, tf.cast(n, tf.float64)), tf.int32)
    order = tf.argsort(confidence, stable=True)
    rank = tf.scatter_nd(order[:, None], tf.range(n), [n])
    return tf.cast(rank >= drop, tf.float32)


def unsupervised_loss(targets, logits, mask=None):
    """Squared error between targets and softmax(logits) (the MixMatch L2 loss).

    targets, logits: [N, K]; mask: optional [N] of 0/1. Returns a scalar: the mean over rows
    and classes, or sum(mask_i * sum_c err_ic) / max(sum(mask) * K, 1).
    """
    logits = tf.cast(logits, tf.float32)
    error = tf.reduce_sum(tf.square(tf.cast(targets, tf.float32) - tf.nn.softmax(logits)), axis=-1)
    return _masked_mean(error, mask, tf.cast(tf.shape(logits)[-1], tf.float32))


def warmup_weight(w_match, images_seen, warmup_kimg):
    """Unsupervised loss weight ramped linearly from 0 to w_match over warmup_kimg * 1024 images."""
    ramp = tf.cast(images_seen, tf.float32) / (float(warmup_kimg) * 1024.0) if warmup_kimg else 1.0
    return tf.cast(w_match, tf.float32) * tf.clip_by_value(ramp, 0.0, 1.0)


def ema_update(ema_vars, variables, decay):
    """ema <- decay * ema + (1 - decay) * v for each pair of variables (in place)."""
    for ema, v in zip(ema_vars, variables, strict=True):
        ema.assign(decay * ema + (1.0 - decay) * tf.cast(v, ema.dtype))


def decay_weights(kernels, factor):
    """Decoupled weight decay: k <- k * (1 - factor) for each variable (factor = wd * lr)."""
    for k in kernels:
        k.assign(k * (1.0 - factor))


# --- The comparison algorithms (docs/algorithms.md) -------------------------------------------


def ramp(images_seen, total_images, warmup_pos=0.4):
    """Linear warm-up of the unsupervised weight: clip(images_seen / (warmup_pos * total_images), 0, 1).

    images_seen: scalar (int or float, tensor or python); total_images: the run's length in
    images; warmup_pos: share of the run the ramp lasts (0 = no ramp). Returns a float32 scalar.
    """
    if not warmup_pos:
        return tf.constant(1.0)
    ratio = tf.cast(images_seen, tf.float32) / (float(warmup_pos) * float(total_images))
    return tf.clip_by_value(ratio, 0.0, 1.0)


def consistency_loss(student_probs, teacher_probs):
    """Pi-Model / Mean Teacher / ICT consistency: mean over rows and classes of (student - sg teacher)^2.

    student_probs, teacher_probs: [N, K] probabilities; no gradient flows into the teacher.
    Returns a float32 scalar.
    """
    teacher = tf.stop_gradient(tf.cast(teacher_probs, tf.float32))
    return tf.reduce_mean(tf.square(tf.cast(student_probs, tf.float32) - teacher))


def _row_axes(x):
    """Every axis of x but the first (the batch): a python list when the rank is static."""
    return list(range(1, x.shape.rank)) if x.shape.rank is not None else tf.range(1, tf.rank(x))


def vat_normalise(d):
    """VAT's direction normalisation, per row: d / max|d|, then / sqrt(1e-6 + sum d^2).

    d: [N, ...]. The max-abs and the sum run over every non-batch axis; an all-zero row stays
    zero. Each nonzero row comes out with L2 norm sqrt(s / (1e-6 + s)) ~ 1 (s >= 1 is the sum of
    squares after the first division). Returns float32 [N, ...].
    """
    d = tf.cast(d, tf.float32)
    axes = _row_axes(d)
    d = d / tf.maximum(tf.reduce_max(tf.abs(d), axis=axes, keepdims=True), 1e-30)
    return d / tf.sqrt(1e-6 + tf.reduce_sum(tf.square(d), axis=axes, keepdims=True))


def kl_divergence(p_logits, q_logits):
    """mean over rows of KL(softmax(p) || softmax(q)) = sum_c p_c (log p_c - log q_c).

    p_logits, q_logits: [N, K]. Gradients flow into both. Returns a float32 scalar (nats).
    """
    p_logits = tf.cast(p_logits, tf.float32)
    log_p = tf.nn.log_softmax(p_logits)
    log_q = tf.nn.log_softmax(tf.cast(q_logits, tf.float32))
    return tf.reduce_mean(tf.reduce_sum(tf.nn.softmax(p_logits) * (log_p - log_q), axis=-1))


def entropy_from_logits(logits):
    """mean over rows of the entropy -sum_c p_c log p_c of p = softmax(logits).

    logits: [N, K]. Returns a float32 scalar (nats).
    """
    logits = tf.cast(logits, tf.float32)
    return tf.reduce_mean(-tf.reduce_sum(tf.nn.softmax(logits) * tf.nn.log_softmax(logits), axis=-1))


def kl_gradient_wrt_q(p_logits, q_logits):
    """d/dq_logits of mean over rows KL(softmax(p) || softmax(q)) = (softmax(q) - softmax(p)) / N.

    p_logits, q_logits: [N, K]. The difference is taken in float64: for q near p (VAT's power
    iteration, logits ~1e-6 apart) float32 probabilities cancel to a few ulps, or to zero, while
    the float64 softmaxes of the same float32 logits keep their difference. Returns float32 [N, K].
    """
    p = tf.nn.softmax(tf.cast(p_logits, tf.float64))
    q = tf.nn.softmax(tf.cast(q_logits, tf.float64))
    return tf.cast((q - p) / tf.cast(tf.shape(q)[0], tf.float64), tf.float32)


def vat_perturbation(forward, x, logits, seed, xi=1e-6, eps=6.0):
    """VAT's adversarial direction (one power iteration), scaled to radius eps.

    forward: callable [N, ...] -> [N, K] logits (the model in training mode, without updating
    batch-norm statistics); x: [N, ...] inputs (u_1); logits: [N, K] = forward(x) (z, held
    fixed); seed: int [2]. d ~ N(0, I), d <- xi * n(d), g = grad_d mean KL(p(z) || p(forward(x + d))),
    r = eps * n(stop_gradient(g)), with n = `vat_normalise`. g is backpropagated from the KL's
    gradient with respect to forward(x + d), `kl_gradient_wrt_q` (computed without float32
    cancellation). Returns r, float32 [N, ...], no gradient, each row of L2 norm ~eps.
    """
    x = tf.cast(x, tf.float32)
    teacher = tf.stop_gradient(tf.cast(logits, tf.float32))
    d = xi * vat_normalise(tf.random.stateless_normal(tf.shape(x), seed))
    with tf.GradientTape() as tape:
        tape.watch(d)
        moved = tf.cast(forward(x + d), tf.float32)
    g = tape.gradient(
        moved,
        d,
        output_gradients=kl_gradient_wrt_q(teacher, tf.stop_gradient(moved)),
        unconnected_gradients=tf.UnconnectedGradients.ZERO,
    )
    return tf.stop_gradient(eps * vat_normalise(tf.stop_gradient(g)))


def vat_loss(student_logits, teacher_logits):
    """L_vat = mean KL(sg p(teacher) || p(student)): the VAT paper's LDS, the fixed prediction first.

    student_logits: [N, K] = f(u_1 + r), gradients flow; teacher_logits: [N, K] = z = f(u_1),
    stop-gradient inside. Returns a float32 scalar (docs/algorithms.md#vat).
    """
    return kl_divergence(tf.stop_gradient(tf.cast(teacher_logits, tf.float32)), student_logits)


def _hard_label_loss(logits, labels, mask):
    """mean over ALL rows of mask_i * CE(labels_i, logits_i); masked rows count as 0."""
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=tf.cast(logits, tf.float32))
    return tf.reduce_mean(mask * ce)


def pseudo_label_loss(logits, threshold):
    """Pseudo-Label: CE against the model's own argmax, kept where it is confident.

    logits: [N, K] = z = f(u_1); threshold: scalar. mask_i = [max_c p(z)_ic > threshold]
    (strict); loss = mean over all N rows of mask_i * CE(argmax_c p(z)_i, z_i). The pseudo-label
    and the mask carry no gradient; the CE does. Returns (loss float32 scalar, mask float32 [N]).
    """
    logits = tf.cast(logits, tf.float32)
    probs = tf.stop_gradient(tf.nn.softmax(logits))
    mask = tf.cast(tf.reduce_max(probs, axis=-1) > tf.cast(threshold, tf.float32), tf.float32)
    return _hard_label_loss(logits, tf.argmax(probs, axis=-1), mask), mask


def ict_mix(u, teacher_probs, beta, seed):
    """ICT's interpolation of each row with the row at the mirrored position (rows reversed).

    u: [N, ...] unlabelled images (u_1); teacher_probs: [N, K] = p(f_ema(u_1)) (stop-gradient
    inside); beta: Beta concentration; seed: int [2]. lam_i ~ Beta(beta, beta), lam_i <-
    max(lam_i, 1 - lam_i) (`beta_lambda`); r_i = N - 1 - i. Returns (mixed_u [N, ...] =
    lam u + (1 - lam) u[r], mixed_targets [N, K] = lam t + (1 - lam) t[r], no gradient).
    """
    u = tf.cast(u, tf.float32)
    teacher = tf.stop_gradient(tf.cast(teacher_probs, tf.float32))
    lam = beta_lambda(seed, tf.shape(u)[0], beta)

    def mix(v):
        w = _broadcast_rows(lam, v)
        return w * v + (1.0 - w) * tf.reverse(v, axis=[0])

    return mix(u), mix(teacher)


def fixmatch_loss(weak_logits, strong_logits, confidence):
    """FixMatch's unlabelled loss: confident pseudo-labels of the weak view taught to the strong view.

    weak_logits, strong_logits: [N, K] (f(w), f(s)); confidence: scalar threshold.
    q = sg softmax(weak); mask_i = [max_c q_ic >= confidence]; loss = mean over all N rows of
    mask_i * CE(argmax q_i, strong_i). Returns (loss float32 scalar, mask float32 [N],
    pseudo_labels int64 [N]).
    """
    q = tf.stop_gradient(tf.nn.softmax(tf.cast(weak_logits, tf.float32)))
    mask = tf.cast(tf.reduce_max(q, axis=-1) >= tf.cast(confidence, tf.float32), tf.float32)
    labels = tf.argmax(q, axis=-1, output_type=tf.int64)
    return _hard_label_loss(strong_logits, labels, mask), mask, labels


def l2_penalty(kernels):
    """0.5 * sum of the squared entries of every tensor in `kernels` (the loss adds wd * this).

    kernels: list of variables/tensors of any shapes. Returns a float32 scalar (0 for none).
    """
    terms = [tf.reduce_sum(tf.square(tf.cast(k, tf.float32))) for k in kernels]
    return 0.5 * tf.add_n(terms) if terms else tf.constant(0.0)


def learning_rate(base_lr, schedule, progress):
    """Learning rate of a step: 'constant' (base_lr) or 'cosine' (base_lr * cos(7 pi r / 16), FixMatch).

    base_lr: scalar; schedule: one of LR_SCHEDULES; progress: r = k / K in [0, 1] (images seen
    over the run's length; clipped to [0, 1]). Cosine ends at base_lr * cos(7 pi / 16) ~ 0.195 base_lr.
    Returns a float32 scalar.
    """
    base_lr = tf.cast(base_lr, tf.float32)
    if schedule == 'constant':
        return base_lr
    if schedule == 'cosine':
        r = tf.clip_by_value(tf.cast(progress, tf.float32), 0.0, 1.0)
        return base_lr * tf.cos(7.0 * math.pi * r / 16.0)
    raise ValueError(f'unknown learning-rate schedule {schedule!r}: expected one of {", ".join(LR_SCHEDULES)}')
