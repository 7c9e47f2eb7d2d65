"""Optimizers as tf.Modules, so their slots live in `tf.train.Checkpoint` next to the model.

Each takes the variables at construction (slots are created there, in the same order) and the
learning rate of each step in `apply(grads, variables, lr)`, so any schedule
(docs/algorithms.md#the-training-step) is the caller's: a float32 scalar tensor computed inside
the step.
"""

from libml.errors import UserError

import tensorflow as tf

OPTIMIZERS = ('adam', 'sgd')


class Adam(tf.Module):
    """Adam (Kingma & Ba) in TensorFlow's form.

    Defaults are TensorFlow's: beta1 0.9, beta2 0.999, epsilon 1e-8. Slots `m`, `v` mirror
    the variables passed to the constructor, in the same order; `iterations` counts the updates.
    (Checkpoint keys: `iterations`, `m/<i>`, `v/<i>`.)
    """

    def __init__(self, variables, *, beta1=0.9, beta2=0.999, epsilon=1e-8, name='adam'):
        super().__init__(name=name)
        self.beta1, self.beta2, self.epsilon = beta1, beta2, epsilon
        self.iterations = tf.Variable(0, dtype=tf.int64, trainable=False, name='iterations')
        self.m = [tf.Variable(tf.zeros_like(v), trainable=False, name='m') for v in variables]
        self.v = [tf.Variable(tf.zeros_like(v), trainable=False, name='v') for v in variables]

    def apply(self, grads, variables, lr):
        """One update at learning rate lr (float32 scalar):
        `var -= lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)`."""
        self.iterations.assign_add(1)
        t = tf.cast(self.iterations, tf.float32)
        step = tf.cast(lr, tf.float32) * tf.sqrt(1.0 - self.beta2**t) / (1.0 - self.beta1**t)
        for g, var, m, v in zip(grads, variables, self.m, self.v, strict=True):
            g = tf.cast(g, var.dtype)
            m.assign(self.beta1 * m + (1.0 - self.beta1) * g)
            v.assign(self.beta2 * v + (1.0 - self.beta2) * tf.square(g))
            var.assign_sub(tf.cast(step, var.dtype) * m / (tf.sqrt(v) + self.epsilon))


class SGD(tf.Module):
    """SGD with (Nesterov) momentum, in the form of TensorFlow's MomentumOptimizer.

    accumulator `a <- momentum * a + g`; then `var -= lr * (g + momentum * a)` (Nesterov) or
    `var -= lr * a`. The learning rate multiplies the step, not the accumulator, so a schedule
    rescales the whole step at once; at a constant lr this equals Keras's SGD. Slots `velocity`
    mirror the variables passed to the constructor; `iterations` counts the updates.
    (Checkpoint keys: `iterations`, `velocity/<i>`.)
    """

    def __init__(self, variables, *, momentum=0.9, nesterov=True, name='sgd'):
        super().__init__(name=name)
        self.momentum, self.nesterov = float(momentum), bool(nesterov)
        self.iterations = tf.Variable(0, dtype=tf.int64, trainable=False, name='iterations')
        self.velocity = [tf.Variable(tf.zeros_like(v), trainable=False, name='velocity') for v in variables]

    def apply(self, grads, variables, lr):
        """One update at learning rate lr (float32 scalar)."""
        self.iterations.assign_add(1)
        for g, var, a in zip(grads, variables, self.velocity, strict=True):
            g = tf.cast(g, var.dtype)
            lr_var = tf.cast(lr, var.dtype)
            a.assign(self.momentum * a + g)
            var.assign_sub(lr_var * (g + self.momentum * a) if self.nesterov else lr_var * a)


def create(name, variables, momentum=0.9, nesterov=True):
    """The optimizer `name` ('adam' with TF defaults, or 'sgd' with `momentum`/`nesterov`) over `variables`."""
    if name == 'adam':
        return Adam(variables)
    if name == 'sgd':
        return SGD(variables, momentum=momentum, nesterov=nesterov)
    raise UserError(f'--optimizer={name!r} is not known: use one of {", ".join(OPTIMIZERS)}')
