"""The shared training loop in-process: one step's exact arithmetic, no retracing, labelled-only baselines."""

import numpy as np
import tensorflow as tf
from plain import TINY, make_trainer


def test_one_step_applies_adam_then_weight_decay_then_ema_exactly(digits):
    trainer = make_trainer()
    x, y = next(iter(trainer.dataset.train_labelled(16, seed=0)))
    variables = trainer.model.trainable_variables
    before = [v.numpy() for v in variables]
    ema_before = [v.numpy() for v in trainer.ema_model.trainable_variables]
    with tf.GradientTape() as tape:
        loss, _ = trainer.algorithm.loss(trainer.step_context(), (x, y), None)
    grads = [g.numpy() for g in tape.gradient(loss, variables)]
    trainer._step((x, y), None)

    lr, wd, decay = TINY['lr'], TINY['wd'], TINY['ema']
    kernels = {id(k) for k in trainer.model.kernels}
    assert len(kernels) > 0
    for var, ema_var, v0, e0, g in zip(variables, trainer.ema_model.trainable_variables, before, ema_before, grads):
        m, v = 0.1 * g, 0.001 * g * g  # Adam's moments after one step
        adam = v0 - lr * np.sqrt(1 - 0.999) / (1 - 0.9) * m / (np.sqrt(v) + 1e-8)
        expected = adam * (1 - wd * lr) if id(var) in kernels else adam
        np.testing.assert_allclose(var.numpy(), expected, rtol=1e-4, atol=1e-7)
        np.testing.assert_allclose(ema_var.numpy(), decay * e0 + (1 - decay) * expected, rtol=1e-4, atol=1e-7)
    assert int(trainer.images_seen.numpy()) == 16


def test_compiled_step_is_traced_once(digits):
    trainer = make_trainer()
    step = trainer.compiled_step()
    stream = iter(trainer.dataset.train_labelled(16, seed=0))
    for _ in range(4):
        step(next(stream))
    assert step.experimental_get_tracing_count() == 1
