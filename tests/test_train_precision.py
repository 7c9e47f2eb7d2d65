"""--mixed_precision: the compute dtype and dynamic loss scaling (libml/train/precision.py)."""

from libml.train import precision

import numpy as np
import tensorflow as tf
from plain import make_trainer


def test_precision_policy():
    assert precision.compute_dtype(False) == ('float32', None)
    assert precision.compute_dtype(True, use_gpu=True) == ('float16', None)
    dtype, notice = precision.compute_dtype(True, use_gpu=False)
    assert dtype in ('bfloat16', 'float32') and notice.startswith('--mixed_precision on CPU')
    assert (dtype == 'bfloat16') == precision._native_bfloat16()


def test_float16_step_skips_overflowing_updates_and_adapts_the_loss_scale(digits, monkeypatch):
    monkeypatch.setattr(precision, 'compute_dtype', lambda mixed_precision: ('float16', None))
    trainer = make_trainer(mixed_precision=True)
    assert trainer.model.stem.compute_dtype == tf.float16 and trainer.loss_scale is not None
    trainer.loss_scale.period = 2
    step = trainer.compiled_step()
    batches = iter(trainer.dataset.train_labelled(16, seed=0))
    before = [v.numpy() for v in trainer.model.trainable_variables]
    trainer.loss_scale.scale.assign(1e38)  # float16 activations' gradients overflow
    step(next(batches))
    assert all(np.array_equal(b, v.numpy()) for b, v in zip(before, trainer.model.trainable_variables))
    assert trainer.loss_scale.scale.numpy() == np.float32(5e37)
    assert int(trainer.optimizer.iterations.numpy()) == 0 and int(trainer.images_seen.numpy()) == 16
    trainer.loss_scale.scale.assign(1024.0)
    stats = step(next(batches))
    assert np.isfinite(float(stats['overall'])) and int(trainer.optimizer.iterations.numpy()) == 1
    assert not all(np.array_equal(b, v.numpy()) for b, v in zip(before, trainer.model.trainable_variables))
    assert trainer.loss_scale.scale.numpy() == 1024.0 and int(trainer.loss_scale.finite_steps.numpy()) == 1
    step(next(batches))
    assert trainer.loss_scale.scale.numpy() == 2048.0 and int(trainer.loss_scale.finite_steps.numpy()) == 0
    assert step.experimental_get_tracing_count() == 1
