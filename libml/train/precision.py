"""Compute precision of the training loop: the dtype --mixed_precision gives, and dynamic loss scaling."""

import tensorflow as tf


def _native_bfloat16():
    """Whether this CPU has bfloat16 instructions (avx512_bf16 / amx_bf16 in /proc/cpuinfo)."""
    try:
        with open('/proc/cpuinfo') as f:
            flags_line = next((line for line in f if line.startswith('flags')), '')
    except OSError:
        return False
    return any(flag in flags_line.split() for flag in ('avx512_bf16', 'amx_bf16'))


def compute_dtype(mixed_precision, use_gpu=None):
    """(dtype name, one-line notice or None) for --mixed_precision.

    GPU: float16 (the loop scales the loss). CPU: bfloat16 where the CPU has bfloat16
    instructions (same exponent range as float32: no loss scaling), else float32.
    """
    if not mixed_precision:
        return 'float32', None
    if use_gpu is None:
        use_gpu = bool(tf.config.list_physical_devices('GPU'))
    if use_gpu:
        return 'float16', None
    if _native_bfloat16():
        return 'bfloat16', '--mixed_precision on CPU: bfloat16 compute (this CPU has bfloat16 instructions)'
    return 'float32', '--mixed_precision on CPU without bfloat16 instructions: computing in float32'


class LossScale(tf.Module):
    """Dynamic loss scaling for float16 gradients.

    The loss is multiplied by `scale` before differentiation and the gradients divided by it.
    A step whose gradients hold Inf/NaN is skipped and halves the scale (not below 1); after
    `period` finite steps in a row the scale doubles. It is not checkpointed: a resumed run
    starts again from `initial` and halves down within a few steps if that is too large.
    """

    def __init__(self, initial=2.0**15, period=2000, name='loss_scale'):
        super().__init__(name=name)
        self.scale = tf.Variable(initial, dtype=tf.float32, trainable=False, name='scale')
        self.finite_steps = tf.Variable(0, dtype=tf.int64, trainable=False, name='finite_steps')
        self.period = period

    def scaled(self, loss):
        """loss * scale (float32)."""
        return tf.cast(loss, tf.float32) * self.scale

    def unscale(self, grads):
        """(grads / scale, scalar bool: every gradient is finite)."""
        grads = [g / self.scale for g in grads]
        finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in grads])
        return grads, finite

    def update(self, finite):
        """Halves the scale after an overflow, doubles it after `period` finite steps."""
        grow = finite & (self.finite_steps + 1 >= self.period)
        self.scale.assign(
            tf.where(finite, tf.where(grow, self.scale * 2.0, self.scale), tf.maximum(self.scale / 2.0, 1.0))
        )
        self.finite_steps.assign(tf.where(finite & ~grow, self.finite_steps + 1, tf.zeros_like(self.finite_steps)))
