"""A real linear classifier and one algorithm step on a fixed tiny batch, for the algorithm files' loss tests.

The model has no batch norm, so interleaving and `update_stats` do not change its outputs; random
draws (VAT's d, MixUp's and ICT's lam and permutation) are inputs the tests draw with the same
stateless primitives and seed, then the formula is computed in numpy.
"""

from libml import algorithm, config

import numpy as np
import tensorflow as tf

K, B = 3, 4


SEED = tf.constant([5, 9], tf.int64)


class Linear(tf.Module):
    """logits = flatten(x) @ w + b."""

    def __init__(self, w, b):
        super().__init__()
        self.w, self.b = tf.Variable(w), tf.Variable(b)

    def __call__(self, x, training=False, update_stats=True):
        return tf.reshape(x, [x.shape[0], -1]) @ self.w + self.b

    def numpy(self, x):
        return np.asarray(x).reshape(len(x), -1) @ self.w.numpy() + self.b.numpy()


class LinearHeads(Linear):
    """A linear classifier with linear one-vs-all (2K, no bias) and open (K + 1) heads on flatten(x)."""

    def __init__(self, w, b, w_ova, w_open, b_open):
        super().__init__(w, b)
        self.w_ova, self.w_open, self.b_open = tf.Variable(w_ova), tf.Variable(w_open), tf.Variable(b_open)

    def outputs(self, x, training=False, update_stats=True):
        flat = tf.reshape(x, [x.shape[0], -1])
        return {'logits': self(x), 'ova': flat @ self.w_ova, 'open': flat @ self.w_open + self.b_open}

    def numpy_ova(self, x):
        """(p_out, p_in) [N, K]: softmax over each class's (outside, inside) pair of logits."""
        z = np.asarray(x).reshape(len(x), -1) @ self.w_ova.numpy()
        return softmax_pairs(z[:, :K], z[:, K:])

    def numpy_open(self, x):
        return np.asarray(x).reshape(len(x), -1) @ self.w_open.numpy() + self.b_open.numpy()


def softmax_pairs(outside, inside):
    """(p_out, p_in) of binary logits: p_in = 1 / (1 + exp(outside - inside))."""
    p_in = 1.0 / (1.0 + np.exp(outside - inside))
    return 1.0 - p_in, p_in


def softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def xent(targets, logits):
    """Row-wise cross-entropy of soft targets [N, K] against logits."""
    return -(targets * np.log(softmax(logits))).sum(1)


def setup(uratio=1, views=2):
    rng = np.random.RandomState(0)
    model = Linear(rng.normal(0, 1, (4, K)).astype(np.float32), rng.normal(0, 0.1, K).astype(np.float32))
    ema = Linear(rng.normal(0, 1, (4, K)).astype(np.float32), np.zeros(K, np.float32))
    x = rng.uniform(-1, 1, (B, 2, 2, 1)).astype(np.float32)
    labels = np.array([0, 1, 2, 1])
    u = rng.uniform(-1, 1, (B * uratio, views, 2, 2, 1)).astype(np.float32)
    u_labels = np.array(([0, -1, 2, 2] * uratio)[: B * uratio])
    step = algorithm.Step(model, ema, SEED, tf.constant(0.25), tf.constant(1000, tf.int64), 5000)
    return model, ema, x, labels, u, u_labels, step


def run_loss(cls, step, x, labels, u, u_labels, **settings):
    cfg = config.build(cls, **settings)
    algo = cls(cfg, K)
    loss, stats = algo.loss(step, (tf.constant(x), tf.constant(labels)), (tf.constant(u), tf.constant(u_labels)))
    return float(loss), {k: float(v) for k, v in stats.items()}


def ramp(step, pos=0.4):
    return min(float(step.images_seen) / (pos * step.total_images), 1.0)


def supervised(model, x, labels):
    return xent(np.eye(K)[labels], model.numpy(x)).mean()


# FixMatch's successors: 8 unlabelled rows (uratio 2) of a 10-image unlabelled file, at these indices.
INDICES = np.array([5, 0, 7, 2, 9, 4, 1, 3])


def successor_setup():
    """setup(uratio=2) with a model whose weak-view predictions are of mixed classes and confidences:
    max q = .84 .73 .62 .76 .47 .87 .86 .57, argmax q = 2 2 2 2 0 1 2 0."""
    model, _, x, labels, u, u_labels, step = setup(uratio=2)
    model.w.assign(2 * model.w.numpy())
    model.b.assign([1.5, 0.5, 0.0])
    return model, x, labels, u, u_labels, step


def run_stateful(cls, step, x, labels, u, u_labels, initial=None, **settings):
    """(loss, stats, new state as numpy) of one step of `cls` from the state `initial` (default its own)."""
    algo = cls(config.build(cls, uratio=2, **settings), K)
    initial = algo.initial_state(10) if initial is None else initial
    state = algorithm.state_variables({k: tf.constant(v) for k, v in initial.items()})
    batch = (tf.constant(u), tf.constant(u_labels), tf.constant(INDICES))
    loss, stats = algo.loss(step._replace(state=state), (tf.constant(x), tf.constant(labels)), batch)
    return float(loss), {k: np.asarray(v) for k, v in stats.items()}, {k: v.numpy() for k, v in state.items()}


def headed_setup(uratio=2, views=2):
    """`setup` with a `LinearHeads` model whose bias makes some weak-view rows confident."""
    model, ema, x, labels, u, u_labels, step = setup(uratio, views)
    rng = np.random.RandomState(3)
    model = LinearHeads(
        model.w.numpy() * 3,
        np.array([4.0, 0.0, -1.0], np.float32),
        rng.normal(0, 2, (4, 2 * K)).astype(np.float32),
        rng.normal(0, 1, (4, K + 1)).astype(np.float32),
        rng.normal(0, 0.5, K + 1).astype(np.float32),
    )
    return model, ema, x, labels, u, u_labels, step._replace(model=model)


def ova_loss_numpy(model, x, labels):
    """OpenMatch's L_ova: -log p_in of the label + the largest -log p_out of the other classes (1e-8 in the logs)."""
    p_out, p_in = model.numpy_ova(x)
    positive = np.eye(K)[labels]
    hardest = (-np.log(p_out + 1e-8) * (1 - positive)).max(1)
    return (-np.log(p_in + 1e-8) * positive).sum(1).mean() + hardest.mean()
