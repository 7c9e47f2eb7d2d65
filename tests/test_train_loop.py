"""The shared training loop in-process: one step's exact arithmetic, no retracing, labelled-only baselines."""

from libml.report import evaluation, reporter

import numpy as np
import pytest
import tensorflow as tf
from plain import TINY, Tally, make_trainer


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


def test_algorithm_state_is_updated_in_the_compiled_step_and_checkpointed(digits, tmp_path):
    trainer = make_trainer(Tally, uratio=2)
    streams = trainer.train_streams(0)
    step = trainer.compiled_step([s.element_spec for s in streams])
    indices, shares = [], []
    for _ in range(5):
        labelled, unlabelled = [next(s) for s in streams]
        indices.append(unlabelled[2].numpy())
        known = unlabelled[1].numpy()
        shares.append([np.mean(known == c) for c in range(10)])
        stats = step(labelled, unlabelled)
    assert step.experimental_get_tracing_count() == 1
    drawn = np.bincount(np.concatenate(indices), minlength=trainer.dataset.unlabel_count)
    assert drawn.sum() == 5 * 32 and drawn.max() >= 1
    np.testing.assert_array_equal(trainer.state['drawn'].numpy(), drawn)
    np.testing.assert_allclose(stats['share'].numpy(), shares[-1], rtol=1e-6)
    path = trainer.checkpoint.write(str(tmp_path / 'model.ckpt-0000000080'))
    resumed = make_trainer(Tally, uratio=2)
    assert not resumed.state['drawn'].numpy().any()
    resumed.restore(path)
    np.testing.assert_array_equal(resumed.state['drawn'].numpy(), drawn)
    # a stateless algorithm's checkpoint holds what it held before algorithms had state
    plain = make_trainer().checkpoint.write(str(tmp_path / 'plain'))
    assert {name.split('/')[0] for name, _ in tf.train.list_variables(plain)} == {
        '_CHECKPOINTABLE_OBJECT_GRAPH',
        'model',
        'ema_model',
        'optimizer',
        'images_seen',
    }


def test_vector_statistics_are_averaged_over_the_period_and_written_per_class(digits):
    trainer = make_trainer(Tally, uratio=2)
    streams = trainer.train_streams(0)
    shares = []
    for _ in range(3):  # the unlabelled batches the period of 3 steps will draw
        known = next(streams[1])[1].numpy()
        shares.append([np.mean(known == c) for c in range(10)])
    step = trainer.compiled_step([s.element_spec for s in streams])
    stats, _, reached = trainer._train_period(step, trainer.train_streams(0), 0, 48)
    assert reached == 48 and stats['share'].shape == (10,)
    np.testing.assert_allclose(stats['share'], np.mean(shares, axis=0), rtol=1e-6)
    labels = np.arange(10)
    predictions = evaluation.Predictions(labels, np.eye(10), np.zeros(10))
    results = {'train_labeled': predictions, 'test': predictions}
    names = [f'c{i}' for i in range(10)]
    tags = reporter.scalars(results, stats, ('xe',), names, 100.0)
    assert [tags[f'monitors/share/c{i}'] for i in range(10)] == pytest.approx(stats['share'].tolist())
    assert 'monitors/share' not in tags and tags['losses/xe'] == stats['xe']
