"""--strategy and --mixed_precision: two logical CPUs against one device, two workers on
loopback, dynamic loss scaling, and the precision policy."""

import glob
import json
import os
import socket
import subprocess
import sys

from libml.errors import UserError
from libml.train import replicas

import pytest
import tensorflow as tf
from conftest import ROOT, TINY_TRAIN

MIRRORED_SCRIPT = """
import numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices('CPU')[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from libml.errors import UserError
from libml.train import replicas
from plain import Tally, make_trainer
import flexmatch
import freematch
import realmix


def replicas_agree(variables):
    return all(np.array_equal(v.values[0].numpy(), v.values[1].numpy()) for v in variables)


mirrored = replicas.get('mirrored')
assert mirrored.num_replicas_in_sync == 2
one, two = make_trainer(), make_trainer(strategy=mirrored)
dataset = one.dataset
for a, b in zip(two.model.variables + two.ema_model.variables, one.model.variables + one.ema_model.variables):
    a.assign(b)
x, y = next(iter(dataset.train_labelled(16, seed=0)))

# One device, the same per-replica maths: each half's loss and gradients, averaged.
variables = one.model.trainable_variables
losses, grads = [], []
for half in (slice(0, 8), slice(8, 16)):
    with tf.GradientTape() as tape:
        loss, _ = one.algorithm.loss(one.step_context(), (x[half], y[half]), None)
    losses.append(float(loss))
    grads.append(tape.gradient(loss, variables))
mean_grads = [(a + b) / 2 for a, b in zip(*grads)]
one._apply(mean_grads, tf.constant(one.config.lr))

batches = iter(replicas.distribute_dataset(mirrored, tf.data.Dataset.from_tensor_slices((x, y)).batch(16)))
streams = two.train_streams(0)
step = two.compiled_step([s.element_spec for s in streams])
stats = step(next(batches))
np.testing.assert_allclose(float(stats['overall']), np.mean(losses), rtol=1e-5)
for m1, m2 in zip(one.optimizer.m, two.optimizer.m):  # Adam's m = 0.1 x the averaged gradient
    np.testing.assert_allclose(m2.numpy(), m1.numpy(), rtol=1e-3, atol=1e-7)
pairs = zip(one.model.trainable_variables, two.model.trainable_variables, one.ema_model.trainable_variables,
            two.ema_model.trainable_variables, mean_grads)
for v1, v2, e1, e2, g in pairs:
    big = np.abs(g.numpy()) > 1e-4  # Adam's first step is lr * sign(g): noise where g ~ 0
    np.testing.assert_allclose(v2.numpy()[big], v1.numpy()[big], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(e2.numpy()[big], e1.numpy()[big], rtol=1e-4, atol=1e-6)
assert int(two.images_seen.numpy()) == 16
assert replicas_agree(list(two.model.variables) + list(two.ema_model.variables) + list(two.optimizer.m))
for _ in range(2):
    step(next(streams[0]))
assert step.experimental_get_tracing_count() == 1

rm = make_trainer(realmix.RealMix, strategy=mirrored)
streams = rm.train_streams(0)
step = rm.compiled_step([s.element_spec for s in streams])
for _ in range(3):
    stats = step(*[next(s) for s in streams])
assert step.experimental_get_tracing_count() == 1
assert all(np.isfinite(float(v)) for v in stats.values())
# --percent_mask=0.25 drops floor(0.25 * 2 * 8) = 4 of each replica's 16 unlabelled rows
assert float(stats['high_prob_ratio']) == 0.75
assert replicas_agree(rm.model.variables) and int(rm.images_seen.numpy()) == 48

# State updated from the whole global batch: the same on both replicas, every drawn image counted once per draw
tally = make_trainer(Tally, strategy=mirrored, uratio=2)
streams = tally.train_streams(0)
step = tally.compiled_step([s.element_spec for s in streams])
for _ in range(3):
    step(*[next(s) for s in streams])
global_batches = tally.dataset.train_unlabelled(32, ('weak',), tally.config.seed).take(3)
drawn = np.bincount(np.concatenate([b[2].numpy() for b in global_batches]), minlength=tally.dataset.unlabel_count)
assert replicas_agree([tally.state['drawn']])
np.testing.assert_array_equal(tally.state['drawn'].values[0].numpy(), drawn)
# FlexMatch and FreeMatch: two steps on two replicas keep one state (and one model) on both. At tau = 1/10 every
# row is confident: FlexMatch records the 2 x 32 images of both global batches (one replica's rows alone: 32).
for cls, settings, changed in (
    (flexmatch.FlexMatch, dict(confidence=0.1), lambda state: (state['selected'] >= 0).sum() == 64),
    (freematch.FreeMatch, {}, lambda state: state['tau'] != np.float32(0.1)),
):
    trainer = make_trainer(cls, strategy=mirrored, uratio=2, **settings)
    streams = trainer.train_streams(0)
    step = trainer.compiled_step([s.element_spec for s in streams])
    for _ in range(2):
        step(*[next(s) for s in streams])
    assert replicas_agree(trainer.state.values()) and replicas_agree(trainer.model.variables), cls.name
    assert changed({k: v.values[0].numpy() for k, v in trainer.state.items()}), cls.name

for bad, words in ((dict(xla=True), '--xla needs one device'), (dict(batch=15), 'multiple of the 2')):
    try:
        make_trainer(strategy=mirrored, **bad)
        raise SystemExit(f'no error for {bad}')
    except UserError as e:
        assert words in str(e), e
print('ok')
"""


def test_two_logical_cpus_match_one_device_and_realmix_runs_mirrored(digits):
    script = MIRRORED_SCRIPT
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, 'tests'), CUDA_VISIBLE_DEVICES='', ML_DATA=str(digits))
    proc = subprocess.run(
        [sys.executable, '-c', script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0 and proc.stdout.strip().endswith('ok'), proc.stderr[-4000:]


def free_ports(count):
    """`count` distinct free TCP ports on 127.0.0.1."""
    sockets = []
    for _ in range(count):
        s = socket.socket()
        s.bind(('127.0.0.1', 0))
        sockets.append(s)
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow  # 60-110 s; the mirrored two-device test above stays in make test
def test_two_workers_on_loopback_train_and_only_the_chief_writes(digits, tmp_path):
    train_dir, scratch = tmp_path / 'exp', tmp_path / 'tmp'
    scratch.mkdir()
    cluster = {'worker': [f'127.0.0.1:{port}' for port in free_ports(2)]}
    cmd = [
        sys.executable,
        'realmix.py',
        '--dataset=digits.1@50-250',
        f'--train_dir={train_dir}',
        '--train_kimg=1',
        '--strategy=multiworker',
    ] + TINY_TRAIN
    procs = []
    for index in (1, 0):
        env = dict(
            os.environ,
            CUDA_VISIBLE_DEVICES='',
            ML_DATA=str(digits),
            TMPDIR=str(scratch),
            TF_CONFIG=json.dumps({'cluster': cluster, 'task': {'type': 'worker', 'index': index}}),
        )
        procs.append(
            subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        )
    try:
        (worker_out, worker_err), (chief_out, chief_err) = [p.communicate(timeout=400) for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert procs[0].returncode == 0 and procs[1].returncode == 0, chief_err[-3000:] + worker_err[-3000:]
    assert 'on 2 replica(s)' in chief_out and 'accuracy train' in chief_out
    assert 'accuracy train' not in worker_out
    files = sorted(
        os.path.relpath(p, train_dir)
        for p in glob.glob(str(train_dir / '**' / '*'), recursive=True)
        if os.path.isfile(p)
    )
    ckpts = [f for f in files if '/tf/model.ckpt-' in f]
    assert [os.path.basename(f) for f in ckpts] == [
        'model.ckpt-0000001024.data-00000-of-00001',
        'model.ckpt-0000001024.index',
    ], files
    assert len([f for f in files if '/tf/events.out' in f]) == 1 and len([f for f in files if 'args.json' in f]) == 1
    assert os.listdir(scratch) == []  # the worker's temporary checkpoint folder is gone
    reader = tf.train.load_checkpoint(str(train_dir / ckpts[1][: -len('.index')]))
    assert reader.get_tensor('images_seen/.ATTRIBUTES/VARIABLE_VALUE') == 1024
    assert reader.get_tensor('optimizer/iterations/.ATTRIBUTES/VARIABLE_VALUE') == 1024 // 16


def test_multiworker_without_tf_config_is_a_clear_error(monkeypatch):
    monkeypatch.delenv('TF_CONFIG', raising=False)
    with pytest.raises(UserError, match=r'needs \$TF_CONFIG'):
        replicas.get('multiworker')
    monkeypatch.setenv('TF_CONFIG', '{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 3}}')
    with pytest.raises(UserError, match='not a valid cluster'):
        replicas.get('multiworker')
