"""Classifiers: shapes, parameter count, batch norm, training, checkpoints, mixed precision."""

import os
import subprocess
import sys
import textwrap

from libml import maths, models
from libml.errors import UserError

import numpy as np
import pytest
import tensorflow as tf
from plain import make_trainer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def images(n, shape, seed=0):
    return tf.constant(np.random.RandomState(seed).uniform(-1, 1, (n,) + shape).astype(np.float32))


def moving_stats(model):
    return [v.numpy().copy() for v in model.variables if not v.trainable]


@pytest.mark.parametrize('arch', models.ARCHS)
@pytest.mark.parametrize('shape', [(16, 16, 1), (32, 32, 3)])
def test_output_shapes(arch, shape):
    model = models.create_model(arch, 7, shape, filters=8, repeat=1)
    x = images(3, shape)
    for training in (False, True):
        logits = model(x, training=training)
        assert logits.shape == (3, 7) and logits.dtype == tf.float32
        assert np.isfinite(logits.numpy()).all()


def test_wide_resnet_parameter_count():
    model = models.create_model('resnet', 10, (32, 32, 3))
    assert isinstance(model, models.WideResNet) and len(model.units) == 12
    # stem 3*3*3*16+16 = 448; stage 0: first unit 14,528 (with the 16->32 projection) + 3 x 18,624;
    # stage 1: 57,728 + 3 x 74,112; stage 2: 230,144 + 3 x 295,680; final BN 256; dense 1,290.
    count = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
    assert count == 1_469_642
    # Kernels: stem, 2 per unit, 3 projections, the dense layer; no biases, no BN parameters.
    assert len(model.kernels) == 1 + 2 * 12 + 3 + 1
    assert all(len(k.shape) in (2, 4) for k in model.kernels)
    assert [v.shape for v in model.head_variables] == [(128, 10), (10,)]


def test_create_model_defaults_and_errors():
    assert models.default_scales(32) == 3 and models.default_scales(16) == 2 and models.default_scales(4) == 1
    small = models.create_model('resnet', 3, (16, 16, 1), filters=8, repeat=1)
    assert [u.conv1.kernel.shape[-1] for u in small.units] == [8, 16]
    with pytest.raises(UserError, match='--arch=vgg'):
        models.create_model('vgg', 10, (32, 32, 3))
    with pytest.raises(UserError, match='float64'):
        models.create_model('resnet', 10, (32, 32, 3), compute_dtype='float64')


def test_batch_norm_moving_average_formula():
    bn = models.BatchNorm(3)
    x = np.random.RandomState(1).normal(2.0, 3.0, (4, 2, 2, 3)).astype(np.float32)
    y = bn(x, training=True, update_stats=False)
    np.testing.assert_array_equal(bn.moving_mean.numpy(), np.zeros(3))
    np.testing.assert_array_equal(bn.moving_variance.numpy(), np.ones(3))
    flat = x.reshape(-1, 3).astype(np.float64)
    np.testing.assert_allclose(
        y.numpy().reshape(-1, 3), (flat - flat.mean(0)) / np.sqrt(flat.var(0) + 1e-3), rtol=1e-4, atol=1e-4
    )
    bn(x, training=True, update_stats=True)
    np.testing.assert_allclose(bn.moving_mean.numpy(), 0.001 * flat.mean(0), rtol=1e-4)
    np.testing.assert_allclose(bn.moving_variance.numpy(), 0.999 + 0.001 * flat.var(0), rtol=1e-5)
    # Evaluation normalises with the moving statistics and changes nothing.
    before = bn.moving_mean.numpy()
    out = bn(x, training=False)
    expected = (flat - 0.001 * flat.mean(0)) / np.sqrt(0.999 + 0.001 * flat.var(0) + 1e-3)
    np.testing.assert_allclose(out.numpy().reshape(-1, 3), expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(bn.moving_mean.numpy(), before)


@pytest.mark.parametrize('arch', models.ARCHS)
def test_update_stats_flag_controls_moving_statistics(arch):
    model = models.create_model(arch, 4, (8, 8, 3), filters=4, repeat=1)
    x = images(4, (8, 8, 3))
    start = moving_stats(model)
    model(x, training=True, update_stats=False)
    model(x, training=False)
    for a, b in zip(start, moving_stats(model)):
        np.testing.assert_array_equal(a, b)
    model(x, training=True, update_stats=True)
    assert all(not np.array_equal(a, b) for a, b in zip(start, moving_stats(model)))


@pytest.mark.parametrize('arch', models.ARCHS)
def test_eval_output_independent_of_batch_composition(arch):
    model = models.create_model(arch, 5, (8, 8, 3), filters=4, repeat=1)
    model(images(8, (8, 8, 3), seed=3), training=True)  # non-trivial moving statistics
    x = images(6, (8, 8, 3))
    full = model(x).numpy()
    np.testing.assert_allclose(model(x[:2]).numpy(), full[:2], rtol=1e-5, atol=1e-5)
    other = tf.concat([x[:2], images(5, (8, 8, 3), seed=9)], 0)
    np.testing.assert_allclose(model(other).numpy()[:2], full[:2], rtol=1e-5, atol=1e-5)
    # Training mode does depend on the batch (batch statistics).
    assert not np.allclose(
        model(x[:2], training=True, update_stats=False).numpy(), model(x, training=True, update_stats=False).numpy()[:2]
    )


def test_shake_branches_are_shaken_in_training_only():
    tf.random.set_seed(0)
    model = models.create_model('shake', 3, (8, 8, 1), filters=4, repeat=1)
    x = images(4, (8, 8, 1))
    np.testing.assert_array_equal(model(x).numpy(), model(x).numpy())
    assert not np.allclose(
        model(x, training=True, update_stats=False).numpy(), model(x, training=True, update_stats=False).numpy()
    )


@pytest.mark.parametrize('arch', models.ARCHS)
def test_training_steps_reduce_loss(arch):
    tf.random.set_seed(1)
    model = models.create_model(arch, 3, (8, 8, 1), filters=8, repeat=1, scales=1)
    x = images(12, (8, 8, 1), seed=2)
    targets = tf.one_hot(np.arange(12) % 3, 3)
    optimizer = tf.keras.optimizers.Adam(0.01)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = maths.supervised_loss(targets, model(x, training=True))
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
        return loss

    losses = [float(step()) for _ in range(25)]
    assert losses[-1] < 0.5 * losses[0], losses


def test_checkpoint_round_trip(tmp_path):
    shape = (8, 8, 3)
    tf.random.set_seed(4)
    model = models.create_model('resnet', 4, shape, filters=4, repeat=1)
    model(images(8, shape, seed=5), training=True)
    path = tf.train.Checkpoint(model=model).write(str(tmp_path / 'ckpt'))
    other = models.create_model('resnet', 4, shape, filters=4, repeat=1)
    x = images(3, shape)
    assert not np.allclose(other(x).numpy(), model(x).numpy())
    tf.train.Checkpoint(model=other).read(path).assert_consumed()
    np.testing.assert_array_equal(other(x).numpy(), model(x).numpy())


@pytest.mark.parametrize('dtype', ['float16', 'bfloat16'])
@pytest.mark.parametrize('arch', models.ARCHS)
def test_reduced_precision_matches_float32(arch, dtype):
    shape = (8, 8, 3)
    reference = models.create_model(arch, 4, shape, filters=8, repeat=1)
    reduced = models.create_model(arch, 4, shape, filters=8, repeat=1, compute_dtype=dtype)
    for a, b in zip(reduced.variables, reference.variables):
        assert a.dtype == tf.float32
        a.assign(b)
    x = images(4, shape)
    expected = reference(x).numpy()
    logits = reduced(x)
    assert logits.dtype == tf.float32
    tolerance = 0.05 if dtype == 'float16' else 0.2
    np.testing.assert_allclose(logits.numpy(), expected, atol=tolerance * np.abs(expected).max() + 1e-3)
    assert reduced(x, training=True).dtype == tf.float32


def test_mirrored_strategy_updates_batch_norm_in_replica_context():
    """Training forward + update on 2 logical CPUs: one mean update, same on both replicas."""
    script = textwrap.dedent("""
        import numpy as np, tensorflow as tf
        cpu = tf.config.list_physical_devices('CPU')[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from libml import models
        strategy = tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1'])
        with strategy.scope():
            model = models.create_model('resnet', 3, (8, 8, 1), filters=4, repeat=1)
        x = np.random.RandomState(0).uniform(-1, 1, (4, 8, 8, 1)).astype(np.float32)
        stem = np.stack([tf.nn.conv2d(x[:2], model.stem.kernel, 1, 'SAME').numpy(),
                         tf.nn.conv2d(x[2:], model.stem.kernel, 1, 'SAME').numpy()]) + model.stem.bias.numpy()
        data = strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensor_slices(x).batch(4))

        @tf.function
        def step(batch):
            return strategy.run(lambda b: model(b, training=True, update_stats=True), (batch,))

        for batch in data:
            step(batch)
        bn = model.units[0].bn1
        expected = 0.001 * stem.reshape(2, -1, 16).mean(axis=1).mean(axis=0)
        for replica in bn.moving_mean.values:
            np.testing.assert_allclose(replica.numpy(), expected, rtol=1e-4, atol=1e-7)
        print('ok')
    """)
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL='3', CUDA_VISIBLE_DEVICES='')
    proc = subprocess.run([sys.executable, '-c', script], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip().endswith('ok'), proc.stderr[-3000:]


def unfused_batch_norm(x, gamma, beta, mean, variance, epsilon=1e-3):
    """The layer's former formula: float32 moments (biased variance) and tf.nn.batch_normalization."""
    x32 = tf.cast(x, tf.float32)
    if mean is None:
        mean, variance = tf.nn.moments(x32, axes=[0, 1, 2])
    return tf.cast(tf.nn.batch_normalization(x32, mean, variance, beta, gamma, epsilon), x.dtype), mean, variance


@pytest.mark.parametrize('dtype', ['float32', 'float16', 'bfloat16'])
def test_fused_batch_norm_matches_the_unfused_formula(dtype):
    """Training and inference outputs, moving averages and gradients (x, gamma, beta) of the fused layer
    agree with the unfused formula computed independently in float32 on the same (rounded) input."""
    rng = np.random.RandomState(3)
    x32 = tf.constant(rng.normal(1.5, 2.0, (6, 5, 4, 3)).astype(np.float32))
    x = tf.cast(x32, dtype)
    weights = tf.constant(rng.normal(0, 1, (6, 5, 4, 3)).astype(np.float32))
    bn = models.BatchNorm(3, momentum=0.9)
    bn.gamma.assign([0.5, 1.0, 2.0])
    bn.beta.assign([-1.0, 0.0, 0.25])
    bn.moving_mean.assign([0.1, 0.2, 0.3])
    bn.moving_variance.assign([1.5, 0.5, 2.0])
    old_mean, old_variance = bn.moving_mean.numpy(), bn.moving_variance.numpy()
    gamma, beta = tf.constant(bn.gamma.numpy()), tf.constant(bn.beta.numpy())
    tol = {'float32': 1e-5, 'float16': 2e-3, 'bfloat16': 2e-2}[dtype]

    with tf.GradientTape(persistent=True) as tape:
        tape.watch([x32, gamma, beta])
        fused = bn(tf.cast(x32, dtype), training=True, update_stats=True)
        reference, mean, variance = unfused_batch_norm(tf.cast(x32, tf.float32), gamma, beta, None, None)
        fused_loss = tf.reduce_sum(tf.cast(fused, tf.float32) * weights)
        reference_loss = tf.reduce_sum(reference * weights)
    assert fused.dtype == x.dtype and fused.shape == x.shape
    scale = float(tf.reduce_max(tf.abs(reference)))
    np.testing.assert_allclose(tf.cast(fused, tf.float32).numpy(), reference.numpy(), atol=tol * scale)
    # moving <- 0.9 moving + 0.1 batch moment (biased variance), in float32
    np.testing.assert_allclose(bn.moving_mean.numpy(), 0.9 * old_mean + 0.1 * mean.numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(bn.moving_variance.numpy(), 0.9 * old_variance + 0.1 * variance.numpy(), rtol=tol)
    for fused_grad, reference_grad in zip(
        tape.gradient(fused_loss, [bn.gamma, bn.beta]), tape.gradient(reference_loss, [gamma, beta])
    ):
        np.testing.assert_allclose(
            fused_grad.numpy(), reference_grad.numpy(), atol=tol * float(tf.reduce_max(tf.abs(reference_grad))) * 5
        )
    grad_x, reference_grad_x = tape.gradient(fused_loss, x32), tape.gradient(reference_loss, x32)
    np.testing.assert_allclose(
        grad_x.numpy(), reference_grad_x.numpy(), atol=tol * float(tf.reduce_max(tf.abs(reference_grad_x))) * 5
    )

    # Inference: the moving statistics, unchanged by the call.
    moving = bn.moving_mean.numpy(), bn.moving_variance.numpy()
    inferred = bn(x, training=False)
    expected, _, _ = unfused_batch_norm(tf.cast(x32, tf.float32), gamma, beta, *moving)
    np.testing.assert_allclose(
        tf.cast(inferred, tf.float32).numpy(), expected.numpy(), atol=tol * float(tf.reduce_max(tf.abs(expected)))
    )
    np.testing.assert_array_equal(bn.moving_mean.numpy(), moving[0])
    # Frozen statistics in training mode (update_stats=False) leave the moving averages alone.
    bn(x, training=True, update_stats=False)
    np.testing.assert_array_equal(bn.moving_variance.numpy(), moving[1])


def test_fused_batch_norm_on_flat_features_and_in_xla():
    """[N, C] inputs (reshaped for the NHWC kernel) and a jit-compiled training call give the formula's values."""
    x = tf.constant(np.random.RandomState(4).normal(0, 3, (10, 4)).astype(np.float32))
    bn = models.BatchNorm(4)
    flat = x.numpy().astype(np.float64)
    expected = (flat - flat.mean(0)) / np.sqrt(flat.var(0) + 1e-3)
    np.testing.assert_allclose(bn(x, training=True, update_stats=False).numpy(), expected, rtol=1e-4, atol=1e-4)
    compiled = tf.function(lambda v: bn(v, training=True), jit_compile=True)
    np.testing.assert_allclose(compiled(x).numpy(), expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(bn.moving_variance.numpy(), 0.999 + 0.001 * flat.var(0), rtol=1e-5)


def test_too_many_stages_for_the_image_is_a_clear_error(digits):
    with pytest.raises(UserError, match='--scales=7 halves the 16-pixel images 6 times: use at most 5 stages'):
        make_trainer(scales=7)
