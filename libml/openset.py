"""Open-set semi-supervised learning: OpenMatch and IOMatch maths and outlier scores (docs/algorithms.md#openmatch,
#iomatch, #outlier-auroc).

The TensorFlow functions work eagerly and inside `tf.function` (and XLA), cast inputs to float32 and keep no
Python state (the AUROC of the scores is `libml.report.metrics.auroc`). Shapes: N rows, C labelled
(inlier) classes, M images in the unlabelled file.

One-vs-all (OVA) head layout: `ova_logits` [N, 2C], the first C columns the "outside" logits of the C binary
classifiers, the last C the "inside" logits, i.e. OpenMatch's `view(N, 2, C)` of a Dense(2C) output; class c's
binary probabilities are softmax over its pair: p_out_c + p_in_c = 1.

Sources checked (commit in brackets; "file:line" below refers to these): OP_Match =
VisionLearningGroup/OP_Match [ba1a59c] (OpenMatch's authors' code), IOMatch = nukezil/IOMatch [e7999f1]
(IOMatch's authors' code, a USB fork that also re-implements OpenMatch). Where the project's first summary of
the methods differs from the papers and code, the code is followed and the docstring says so.
"""

from typing import NamedTuple

from libml.selection import scatter_last

import tensorflow as tf

_EPS = 1e-8  # inside the logs of OpenMatch's OVA losses (OP_Match utils/misc.py:104-116)


def ova_probs(ova_logits):
    """Binary probabilities of the C one-vs-all classifiers.

    ova_logits: [N, 2C] (outside logits first, then inside). Returns (p_out [N, C], p_in [N, C]), float32,
    p_out + p_in = 1 (softmax over each class's pair, OP_Match utils/misc.py:97-98).
    """
    logits = tf.cast(ova_logits, tf.float32)
    pairs = tf.nn.softmax(tf.reshape(logits, [tf.shape(logits)[0], 2, -1]), axis=1)
    return pairs[:, 0, :], pairs[:, 1, :]


def ova_loss(ova_logits, labels):
    """OpenMatch's one-vs-all loss on labelled rows (paper Eq. 1; OP_Match utils/misc.py:96-109).

    ova_logits: [N, 2C]; labels: int [N] in [0, C). L_ova = mean_i -log(p_in_{i,y_i} + 1e-8)
    + mean_i max_{c != y_i} -log(p_out_{ic} + 1e-8): only the hardest negative classifier counts. As in the
    code the max runs over every c with the y_i term set to 0 (so a row's negative term is never below 0).
    IOMatch uses the same loss (IOMatch semilearn/algorithms/iomatch/utils.py:7-19, weight mb_loss_ratio 1.0).
    Returns a float32 scalar.
    """
    p_out, p_in = ova_probs(ova_logits)
    positive = tf.one_hot(tf.cast(labels, tf.int64), tf.shape(p_in)[1])
    loss_in = tf.reduce_mean(tf.reduce_sum(-tf.math.log(p_in + _EPS) * positive, axis=1))
    loss_out = tf.reduce_mean(tf.reduce_max(-tf.math.log(p_out + _EPS) * (1.0 - positive), axis=1))
    return loss_in + loss_out


def ova_entropy(ova_logits):
    """Mean over rows and classes of each binary classifier's entropy -sum_{out,in} p log(p + 1e-8).

    ova_logits: [N, 2C]. OP_Match utils/misc.py:112-117. Returns a float32 scalar (nats, <= log 2).
    """
    p_out, p_in = ova_probs(ova_logits)
    return tf.reduce_mean(-p_out * tf.math.log(p_out + _EPS) - p_in * tf.math.log(p_in + _EPS))


def openmatch_em_loss(ova_logits_1, ova_logits_2):
    """OpenMatch's open-set entropy minimisation L_em: the mean of `ova_entropy` over the two unlabelled views.

    ova_logits_1, ova_logits_2: [N, 2C] (two weak views of every unlabelled image). (OP_Match trainer.py:151-152.)
    Weight 0.1 (`--lambda_oem`, OP_Match utils/parser.py:55). Returns a float32 scalar.
    """
    return 0.5 * (ova_entropy(ova_logits_1) + ova_entropy(ova_logits_2))


def socr_loss(ova_logits_1, ova_logits_2):
    """OpenMatch's soft open-set consistency L_socr = mean_i sum_c sum_{out,in} (p(view 1) - p(view 2))^2.

    ova_logits_1, ova_logits_2: [N, 2C]; gradients flow into both views (no stop-gradient in the code,
    OP_Match trainer.py:155-160). Since p_out = 1 - p_in, this is 2 * mean_i sum_c (p_in_1 - p_in_2)^2.
    Weight 0.5 for CIFAR-10 (`--lambda_socr`, utils/parser.py:57; 1.0 for CIFAR-100). Returns a float32 scalar.
    """
    p_out_1, p_in_1 = ova_probs(ova_logits_1)
    p_out_2, p_in_2 = ova_probs(ova_logits_2)
    return tf.reduce_mean(
        tf.reduce_sum(tf.square(p_out_1 - p_out_2), axis=1) + tf.reduce_sum(tf.square(p_in_1 - p_in_2), axis=1)
    )


def ova_outlier_score(logits, ova_logits):
    """The one-vs-all outlier score: p_out of the closed-set predicted class (OP_Match utils/misc.py:206-207).

    logits: [N, C] closed-set logits (or probabilities: only their argmax is used); ova_logits: [N, 2C].
    Higher = more likely outside the labelled classes. Returns float32 [N] in [0, 1].
    """
    p_out, _ = ova_probs(ova_logits)
    predicted = tf.argmax(tf.cast(logits, tf.float32), axis=-1)
    return tf.gather(p_out, predicted, axis=1, batch_dims=1)


def openmatch_inliers(logits, ova_logits):
    """OpenMatch's pseudo-inliers: rows whose outlier score is below 0.5, i.e. p_in of the predicted class > 0.5.

    logits: [N, C]; ova_logits: [N, 2C], from the EMA model in evaluation mode on un-augmented images, over
    the whole unlabelled file (OP_Match utils/misc.py:142-181, `unk_score < 0.5`). Returns float32 [N] of 0/1.
    """
    return tf.cast(ova_outlier_score(logits, ova_logits) < 0.5, tf.float32)


def openmatch_update_inliers(inliers, indices, logits, ova_logits):
    """Writes a chunk of the re-selection pass into OpenMatch's state (the inlier flag of every unlabelled image).

    inliers: float32 [M] (1 = selected for the FixMatch term); indices: int [n] positions of the chunk's rows
    in the unlabelled file; logits: [n, C]; ova_logits: [n, 2C]. inliers[indices] = `openmatch_inliers`
    (an index repeated in the chunk takes its last row's flag). The authors re-select at the start of every
    epoch (1024 steps, OP_Match utils/parser.py:71) from epoch `start_fix` (10, parser.py:60; trainer.py:90-92);
    before that the FixMatch term is off (trainer.py:162-175). The initial state is all ones (nothing is
    used before the first selection). Returns the new float32 [M].
    """
    flags = openmatch_inliers(logits, ova_logits)
    return scatter_last(tf.cast(inliers, tf.float32), indices, flags, tf.ones_like(flags, tf.bool))


def selected_fixmatch_loss(weak_logits, strong_logits, selected, confidence=0.0):
    """OpenMatch's FixMatch term on the rows of a batch that are selected inliers, averaged over those rows.

    weak_logits, strong_logits: [N, C] (f(w), f(s)); selected: [N] 0/1 (the inlier flag of each row's
    image); confidence: threshold on max q, q = sg softmax(weak) (0.0 and temperature 1: OP_Match
    `--threshold`, `--T`, parser.py:68, 90). L = sum_i sel_i [max q_i >= confidence] CE(argmax q_i, strong_i)
    / max(sum_i sel_i, 1): the authors draw a separate batch of selected images and average over it
    (trainer.py:162-171); a batch that mixes selected and other rows averages over its selected ones.
    Returns (loss float32 scalar, mask float32 [N] = sel * confident, pseudo-labels int64 [N]).
    """
    q = tf.stop_gradient(tf.nn.softmax(tf.cast(weak_logits, tf.float32)))
    selected = tf.cast(selected, tf.float32)
    mask = selected * tf.cast(tf.reduce_max(q, axis=-1) >= tf.cast(confidence, tf.float32), tf.float32)
    labels = tf.argmax(q, axis=-1, output_type=tf.int64)
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=tf.cast(strong_logits, tf.float32))
    return tf.reduce_sum(mask * ce) / tf.maximum(tf.reduce_sum(selected), 1.0), mask, labels


class OpenLosses(NamedTuple):
    """OpenMatch's open-set terms of one step (weighted total and the parts, float32 scalars)."""

    loss: tf.Tensor  # L_ova + em_weight * L_em + socr_weight * L_socr
    ova: tf.Tensor
    em: tf.Tensor
    socr: tf.Tensor


def openmatch_open_losses(ova_logits_x, labels, ova_logits_u1, ova_logits_u2, em_weight=0.1, socr_weight=0.5):
    """OpenMatch's open-set objective of one step: L_ova (labelled) + 0.1 L_em + 0.5 L_socr (unlabelled).

    ova_logits_x: [B', 2C] labelled rows (the authors feed TWO augmented views of each labelled image,
    B' = 2B, to both CE and L_ova: OP_Match trainer.py:138-148); labels: int [B']; ova_logits_u1,
    ova_logits_u2: [N, 2C] two weak views of the unlabelled batch (uratio 2: `--mu 2` in run_cifar10.sh).
    The closed-set CE and the FixMatch term on the selected inliers (`maths.fixmatch_loss` with confidence
    0.0 and temperature 1: `--threshold` 0.0, `--T` 1, parser.py:68, 90; weight 1, trainer.py:176) are added
    by the caller. Returns OpenLosses(loss, ova, em, socr).
    """
    ova = ova_loss(ova_logits_x, labels)
    em = openmatch_em_loss(ova_logits_u1, ova_logits_u2)
    socr = socr_loss(ova_logits_u1, ova_logits_u2)
    return OpenLosses(ova + em_weight * em + socr_weight * socr, ova, em, socr)


# --- IOMatch (Li et al. 2023) ----------------------------------------------------------------------------


class AlignQueue(NamedTuple):
    """IOMatch's distribution-alignment state: the last L batch means of p, and the next row to write."""

    queue: tf.Tensor  # [L, C], starts at zeros
    ptr: tf.Tensor  # [] int64, starts at 0


def iomatch_align_init(nclass, length=128):
    """Initial AlignQueue: L = 128 rows of zeros (`--da_len` 128, IOMatch iomatch.py:194; hooks/dist_align.py:85-86)."""
    return AlignQueue(tf.zeros([length, nclass]), tf.constant(0, tf.int64))


def iomatch_align_update(state, probs):
    """Writes the batch mean of p at row ptr and advances ptr modulo L (IOMatch hooks/dist_align.py:116-119).

    state: AlignQueue; probs: [N, C] closed-set probabilities of the weak view. Returns the new AlignQueue.
    The code writes before aligning the same batch (dist_align.py:91): call this first.
    """
    q = tf.stop_gradient(tf.cast(probs, tf.float32))
    queue = tf.cast(state.queue, tf.float32)
    length = tf.shape(queue, out_type=tf.int64)[0]
    ptr = tf.cast(state.ptr, tf.int64)
    queue = tf.tensor_scatter_nd_update(queue, ptr[None, None], tf.reduce_mean(q, axis=0)[None])
    return AlignQueue(queue, (ptr + 1) % length)


def iomatch_align(probs, state):
    """Distribution alignment to the uniform target: p' = Normalise(p * (1/C + 1e-6) / (mean_rows(queue) + 1e-6)).

    probs: [N, C]; state: the AlignQueue after `iomatch_align_update`. The mean runs over ALL L rows, the
    unwritten zero rows included (IOMatch hooks/dist_align.py:94-95); the row normalisation cancels that scale
    up to the 1e-6. Returns float32 [N, C], no gradient.
    """
    q = tf.stop_gradient(tf.cast(probs, tf.float32))
    nclass = q.shape[-1]
    aligned = q * (1.0 / nclass + 1e-6) / (tf.reduce_mean(tf.cast(state.queue, tf.float32), axis=0) + 1e-6)
    return aligned / tf.reduce_sum(aligned, axis=-1, keepdims=True)


def iomatch_targets(probs, ova_logits):
    """IOMatch's open-set targets and training outlier score from closed probabilities and the OVA head.

    probs: [N, C] closed-set p of the weak view (aligned or not); ova_logits: [N, 2C] of the weak view.
    q_c = p_c * p_in_c for c < C, q_C = sum_c p_c * p_out_c (so q sums to 1); score s = q_C, the
    p-weighted outlier probability (IOMatch iomatch.py:128-139). Returns (q [N, C+1], s [N]), no gradient.
    """
    p = tf.stop_gradient(tf.cast(probs, tf.float32))
    p_out, p_in = ova_probs(tf.stop_gradient(tf.cast(ova_logits, tf.float32)))
    outside = tf.reduce_sum(p * p_out, axis=1)
    return tf.concat([p * p_in, outside[:, None]], axis=1), outside


class IOMatchLosses(NamedTuple):
    """IOMatch's two unlabelled losses of one step, their masks, pseudo-labels and monitors."""

    closed: tf.Tensor  # [] L_ui
    open: tf.Tensor  # [] L_op
    closed_mask: tf.Tensor  # [N] float32
    open_mask: tf.Tensor  # [N] float32
    labels: tf.Tensor  # [N] int64 argmax p
    monitors: dict


def _soft_ce(targets, logits):
    return tf.nn.softmax_cross_entropy_with_logits(labels=targets, logits=tf.cast(logits, tf.float32))


def iomatch_loss(strong_logits, strong_open_logits, probs, ova_logits, p_cutoff=0.95, q_cutoff=0.5):
    """IOMatch's unlabelled losses: closed-set on confident inliers, (C+1)-way open-set on every confident target.

    strong_logits: [N, C] closed head on s; strong_open_logits: [N, C+1] open head on s; probs: [N, C] p of
    the weak view (`iomatch_align`-ed when distribution alignment is on); ova_logits: [N, 2C] OVA head on w.
    (q, s) = `iomatch_targets`; closed mask = [max p >= p_cutoff] * [s < 0.5]; open mask = [max q >= q_cutoff];
    L_ui = mean over all N rows of closed_mask_i * CE(p_i, strong_i); L_op = mean over all N rows of
    open_mask_i * CE(q_i, strong_open_i) (IOMatch iomatch.py:123-147, masks `>=`: hooks/masking.py:46).
    Departure from the project's first summary (CE against argmax p): both losses use the SOFT targets p and q
    (`consistency_loss(..., 'ce')` with same-shape targets, iomatch.py:146-147). The caller adds
    L = L_x + 1.0 L_ova(labelled) + 1.0 L_ui + 1.0 L_op (mb/op_loss_ratio 1.0, iomatch.py:195-196) with L_op
    switched off during the first epoch (iomatch.py:149-150). Monitors: mask (closed), open_mask, in_mask
    (share with s < 0.5), p_mask (share confident). Returns IOMatchLosses.
    """
    p = tf.stop_gradient(tf.cast(probs, tf.float32))
    q, outside = iomatch_targets(p, ova_logits)
    p_mask = tf.cast(tf.reduce_max(p, axis=-1) >= tf.cast(p_cutoff, tf.float32), tf.float32)
    in_mask = tf.cast(outside < 0.5, tf.float32)
    closed_mask = p_mask * in_mask
    open_mask = tf.cast(tf.reduce_max(q, axis=-1) >= tf.cast(q_cutoff, tf.float32), tf.float32)
    closed = tf.reduce_mean(closed_mask * _soft_ce(p, strong_logits))
    opened = tf.reduce_mean(open_mask * _soft_ce(q, strong_open_logits))
    monitors = {
        'mask': tf.reduce_mean(closed_mask),
        'open_mask': tf.reduce_mean(open_mask),
        'in_mask': tf.reduce_mean(in_mask),
        'p_mask': tf.reduce_mean(p_mask),
    }
    labels = tf.argmax(p, axis=-1, output_type=tf.int64)
    return IOMatchLosses(closed, opened, closed_mask, open_mask, labels, monitors)


def iomatch_outlier_score(open_logits):
    """IOMatch's outlier score: the open head's probability of the extra (C+1)-th class.

    open_logits: [N, C+1]. The authors' evaluation calls an image an outlier when the open head's argmax is
    the extra class (IOMatch evaluate.ipynb, `evaluate_io`); its probability is the matching continuous score
    (their code computes no AUROC for IOMatch; `iomatch_targets`' s is the alternative). Returns float32 [N].
    """
    return tf.nn.softmax(tf.cast(open_logits, tf.float32))[:, -1]


# --- Outlier scores of plain classifiers -----------------------------------------------------------------


def max_softmax_score(probs):
    """Outlier score of a plain classifier: 1 - max_c p_c. probs: [N, C]. Returns float32 [N], higher = more outside."""
    return 1.0 - tf.reduce_max(tf.cast(probs, tf.float32), axis=-1)


def percent_mask_score(probs):
    """RealMix's percent-mask ranking quantity as an outlier score: 1 - max_c p_c.

    probs: [N, C]. `maths.percent_mask` ranks rows by m_i = max_c p_ic ascending (stable sort) and drops the
    floor(percent * N) first, so the dropped rows are exactly the ones with the highest 1 - m (among equal
    scores the lower index is dropped first; the AUROC counts such ties as half). In training RealMix ranks
    the MixUp-ed unlabelled rows of a batch; as a detector on an image the same quantity is taken from the
    model's prediction on that image, which makes it the same score as `max_softmax_score`.
    Returns float32 [N].
    """
    return max_softmax_score(probs)


# --- An algorithm's outlier score of its model's outputs -------------------------------------------------

# name -> outputs -> float32 [N]; `outputs`: `models.Classifier.outputs`, {'logits': [N, C], 'ova': [N, 2C],
# 'open': [N, C+1]} (the heads the model has). `Algorithm.outlier_score` names one.
OUTLIER_SCORES = {
    'max_softmax': lambda outputs: max_softmax_score(tf.nn.softmax(outputs['logits'])),
    'percent_mask': lambda outputs: percent_mask_score(tf.nn.softmax(outputs['logits'])),
    'ova': lambda outputs: ova_outlier_score(outputs['logits'], outputs['ova']),
    'open': lambda outputs: iomatch_outlier_score(outputs['open']),
}


def outlier_score(name, outputs):
    """The outlier score `OUTLIER_SCORES[name]` of a model's `outputs` dict: float32 [N], higher = more outside."""
    return OUTLIER_SCORES[name](outputs)
