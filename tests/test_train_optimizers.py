"""Adam and SGD (libml/train/optimizers.py) against numpy written-out update rules and Keras's optimizers."""

from libml.errors import UserError
from libml.train import optimizers

import numpy as np
import pytest
import tensorflow as tf

W0 = [np.array([[1.0, -2.0], [0.5, 3.0]], np.float32), np.array([0.25, -0.75], np.float32)]
GRADS = [  # three steps of gradients for the two variables
    [np.array([[0.5, -1.0], [2.0, 0.0]], np.float32), np.array([1.0, -0.5], np.float32)],
    [np.array([[-0.25, 0.5], [1.0, 3.0]], np.float32), np.array([0.0, 2.0], np.float32)],
    [np.array([[1.0, 1.0], [-2.0, 0.5]], np.float32), np.array([-1.0, 0.25], np.float32)],
]


def _variables():
    return [tf.Variable(w) for w in W0]


def _run(opt_factory, lrs, steps=3):
    variables = _variables()
    opt = opt_factory(variables)
    for k in range(steps):
        opt.apply([tf.constant(g) for g in GRADS[k]], variables, tf.constant(lrs[k], tf.float32))
    return [v.numpy() for v in variables], opt


def test_sgd_nesterov_one_step_by_hand():
    v = tf.Variable([1.0, 2.0])
    opt = optimizers.SGD([v], momentum=0.9, nesterov=True)
    opt.apply([tf.constant([0.5, -1.0])], [v], tf.constant(0.1))
    # a = g; w -= 0.1 * (g + 0.9 g) = 0.19 g.
    np.testing.assert_allclose(v.numpy(), [1.0 - 0.095, 2.0 + 0.19], rtol=1e-6)
    np.testing.assert_allclose(opt.velocity[0].numpy(), [0.5, -1.0])
    opt.apply([tf.constant([0.5, -1.0])], [v], tf.constant(0.1))
    # a = 1.9 g; w -= 0.1 * (g + 1.71 g) = 0.271 g.
    np.testing.assert_allclose(v.numpy(), [0.905 - 0.1355, 2.19 + 0.271], rtol=1e-6)
    assert int(opt.iterations) == 2


@pytest.mark.parametrize('nesterov', [True, False])
def test_sgd_matches_numpy_with_a_changing_learning_rate(nesterov):
    lrs = [0.1, 0.05, 0.02]
    got, _ = _run(lambda vs: optimizers.SGD(vs, momentum=0.9, nesterov=nesterov), lrs)
    # TensorFlow's MomentumOptimizer form: a = m a + g; w -= lr (g + m a) (Nesterov) or lr a.
    weights = [w.astype(np.float64) for w in W0]
    accum = [np.zeros_like(w) for w in weights]
    for k, lr in enumerate(lrs):
        for i, g in enumerate(GRADS[k]):
            accum[i] = 0.9 * accum[i] + g
            weights[i] -= lr * (g + 0.9 * accum[i]) if nesterov else lr * accum[i]
    for a, b in zip(got, weights):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize('nesterov', [True, False])
def test_sgd_matches_keras_at_constant_learning_rate(nesterov):
    got, _ = _run(lambda vs: optimizers.SGD(vs, momentum=0.9, nesterov=nesterov), [0.03] * 3)
    variables = _variables()
    keras_opt = tf.keras.optimizers.SGD(learning_rate=0.03, momentum=0.9, nesterov=nesterov)
    for grads in GRADS:
        keras_opt.apply_gradients(zip([tf.constant(g) for g in grads], variables))
    for a, b in zip(got, variables):
        np.testing.assert_allclose(a, b.numpy(), rtol=1e-6, atol=1e-6)


def test_adam_matches_keras_with_a_per_step_learning_rate():
    lrs = [0.01, 0.002, 0.005]
    got, opt = _run(optimizers.Adam, lrs)
    variables = _variables()
    keras_opt = tf.keras.optimizers.Adam(learning_rate=lrs[0], beta_1=0.9, beta_2=0.999, epsilon=1e-8)
    for lr, grads in zip(lrs, GRADS):
        keras_opt.learning_rate = lr
        keras_opt.apply_gradients(zip([tf.constant(g) for g in grads], variables))
    for a, b in zip(got, variables):
        np.testing.assert_allclose(a, b.numpy(), rtol=1e-5, atol=1e-7)
    assert int(opt.iterations) == 3


def test_adam_first_step_by_hand():
    v = tf.Variable([1.0, -1.0])
    optimizers.Adam([v]).apply([tf.constant([0.3, -2.0])], [v], tf.constant(0.01))
    # t = 1: m = 0.1 g, v = 0.001 g^2, step = lr sqrt(0.001) / 0.1 * m / (sqrt(v) + eps) ~ lr sign(g).
    np.testing.assert_allclose(v.numpy(), [0.99, -0.99], rtol=1e-6)


def test_apply_inside_xla_with_a_scheduled_learning_rate():
    for factory in (optimizers.Adam, optimizers.SGD):
        eager, _ = _run(factory, [0.1, 0.05, 0.02])
        variables = _variables()
        opt = factory(variables)
        step = tf.function(lambda grads, lr: opt.apply(grads, variables, lr), jit_compile=True)  # noqa: B023
        for k, lr in enumerate([0.1, 0.05, 0.02]):
            step([tf.constant(g) for g in GRADS[k]], tf.constant(lr))
        for a, b in zip(eager, variables):
            np.testing.assert_allclose(b.numpy(), a, rtol=1e-5, atol=1e-7)


def test_adam_checkpoint_keys_are_the_released_ones(tmp_path):
    """Checkpoints written before the per-step learning rate (keys below) still restore."""
    variables = _variables()
    opt = optimizers.Adam(variables)
    path = tf.train.Checkpoint(optimizer=opt).write(str(tmp_path / 'ckpt'))
    keys = {name for name, _ in tf.train.list_variables(path)} - {'_CHECKPOINTABLE_OBJECT_GRAPH'}
    suffix = '/.ATTRIBUTES/VARIABLE_VALUE'
    assert keys == {f'optimizer/{k}{suffix}' for k in ['iterations', 'm/0', 'm/1', 'v/0', 'v/1']}


@pytest.mark.parametrize('name', ['adam', 'sgd'])
def test_checkpoint_round_trip_resumes_exactly(name, tmp_path):
    lrs = [0.1, 0.05, 0.02]
    straight, _ = _run(lambda vs: optimizers.create(name, vs), lrs)
    variables = _variables()
    opt = optimizers.create(name, variables)
    checkpoint = tf.train.Checkpoint(optimizer=opt, weights=variables)
    opt.apply([tf.constant(g) for g in GRADS[0]], variables, tf.constant(lrs[0]))
    path = checkpoint.write(str(tmp_path / 'ckpt'))
    fresh = _variables()
    resumed = optimizers.create(name, fresh)
    tf.train.Checkpoint(optimizer=resumed, weights=fresh).read(path).assert_consumed()
    assert int(resumed.iterations) == 1
    for k in (1, 2):
        resumed.apply([tf.constant(g) for g in GRADS[k]], fresh, tf.constant(lrs[k]))
    for a, b in zip(straight, fresh):
        np.testing.assert_array_equal(b.numpy(), a)
    if name == 'sgd':
        keys = {n for n, _ in tf.train.list_variables(path)}
        assert 'optimizer/velocity/1/.ATTRIBUTES/VARIABLE_VALUE' in keys


def test_create():
    variables = _variables()
    adam = optimizers.create('adam', variables)
    assert isinstance(adam, optimizers.Adam) and (adam.beta1, adam.beta2, adam.epsilon) == (0.9, 0.999, 1e-8)
    sgd = optimizers.create('sgd', variables, momentum=0.5, nesterov=False)
    assert isinstance(sgd, optimizers.SGD) and (sgd.momentum, sgd.nesterov) == (0.5, False)
    assert len(sgd.velocity) == 2 and sgd.velocity[0].shape == (2, 2)
    assert optimizers.create('sgd', variables).nesterov
    with pytest.raises(UserError, match='adam, sgd'):
        optimizers.create('rmsprop', variables)


def test_old_positional_learning_rate_is_refused():
    """`Adam(variables, lr)` (the constant-lr signature) must not silently become beta1."""
    with pytest.raises(TypeError):
        optimizers.Adam(_variables(), 0.002)
