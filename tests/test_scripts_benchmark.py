"""scripts/benchmark.py: FLOP counts against hand counts, the analytic peak, a tiny run with a line per algorithm."""

import json
import re

from libml import config as config_lib
from libml import models
from libml.train import loop, replicas

import numpy as np
import pytest
import tensorflow as tf
from conftest import run_cli

from fully_supervised import fs_baseline
from scripts import benchmark

# Tiny ConvNet (filters 2, one scale) on 8x8x1 images, 5 classes; multiply-adds per image:
# stem 1->2, blocks 2->2 and 2->4, all 3x3 at 8x8 (SAME padding counted), dense 4->5.
STEM, BLOCK1, BLOCK2, DENSE = 64 * 2 * 9 * 1, 64 * 2 * 9 * 2, 64 * 4 * 9 * 2, 4 * 5


def test_forward_flops_count_convolutions_and_dense_layers():
    model = models.create_model('convnet', 5, (8, 8, 1), filters=2, scales=1)
    assert benchmark.forward_flops(model, (8, 8, 1)) == 2 * (STEM + BLOCK1 + BLOCK2 + DENSE)  # 16,168


def test_step_flops_count_forward_and_gradients(tmp_path):
    """A supervised step on 4 images: forward (3 convs + dense), kernel gradients of all four, and input
    gradients of every layer but the stem (nothing needs the gradient with respect to the images)."""
    dataset = benchmark.synthetic_dataset(str(tmp_path), 8, 8, 1, 5, 'none')
    algorithm = fs_baseline.FSBaseline
    cfg = config_lib.build(algorithm, arch='convnet', filters=2, scales=1, batch=4, strategy='none', dataset='x')
    trainer = loop.Trainer(cfg, algorithm, dataset, replicas.get('none'))
    forward = STEM + BLOCK1 + BLOCK2 + DENSE
    kernel_grads = STEM + BLOCK1 + BLOCK2 + DENSE
    input_grads = BLOCK1 + BLOCK2 + DENSE
    step = trainer.compiled_step()
    assert benchmark.graph_flops(step) == 2 * 4 * (forward + kernel_grads + input_grads)  # 184,800
    # The convolutions alone: 3 forward, 3 kernel gradients, 2 input gradients (the dense layer's MatMuls left out).
    kernels = benchmark.conv_kernels(step)
    counts = {kind: sum(c for (k, *_), (c, _) in kernels.items() if k == kind) for kind in benchmark.CONV_TYPES}
    assert counts == {'Conv2D': 3, 'Conv2DBackpropFilter': 3, 'Conv2DBackpropInput': 2}
    assert sum(c * f for c, f in kernels.values()) == 2 * 4 * (3 * (STEM + BLOCK1 + BLOCK2) - STEM)  # 175,104
    # Input gradients of the two blocks (kernel, output gradient), run alone on random inputs of those shapes.
    shapes = set()
    for key in kernels:
        fn, args = benchmark.kernel_call(key)
        assert np.isfinite(fn(*args).numpy())
        if key[0] == 'Conv2DBackpropInput':
            shapes.add(tuple(tuple(a.shape.as_list()) for a in args))
    assert shapes == {((3, 3, 2, 2), (4, 8, 8, 2)), ((3, 3, 2, 4), (4, 8, 8, 4))}


# /proc/cpuinfo of this project's machine (two blocks, the fields the peak reads), and of an Intel laptop.
EPYC = ''.join(
    f'processor\t: {i}\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 1\nmodel name\t: AMD EPYC\n'
    f'cpu MHz\t\t: 2445.406\nflags\t\t: fpu sse sse2 avx fma avx2 bmi2\ncore id\t\t: {i}\n\n'
    for i in range(2)
)
INTEL = (
    'processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 142\n'
    'model name\t: Intel(R) Core(TM) i7-8650U CPU @ 1.90GHz\ncpu MHz\t\t: 800.000\nflags\t\t: sse avx fma avx2\n\n'
)


def test_analytic_peak_from_cpuinfo():
    peak = benchmark.analytic_peak(EPYC, cores=2)
    # Zen 3: 2 FMA units x 8 fp32 lanes x 2 FLOP = 32 FLOP/cycle/core; 2 cores at 2.445406 GHz.
    assert peak['per_cycle'] == 32
    assert peak['flops'] == pytest.approx(2 * 2.445406e9 * 32)  # 156.5 GFLOP/s
    assert 'cpu MHz' in peak['clock_source'] and 'AVX2 + FMA' in peak['how']
    intel = benchmark.analytic_peak(INTEL, cores=4)
    assert intel['clock_hz'] == pytest.approx(1.9e9) and 'model name' in intel['clock_source']  # not cpu MHz
    assert intel['flops'] == pytest.approx(4 * 1.9e9 * 32)
    # A Sapphire Rapids Xeon as a KVM guest shows it (generic name, AMX): 2 x 512-bit FMA units.
    xeon = INTEL.replace('Core(TM) i7-8650U CPU @ 1.90GHz', 'Xeon(R) Processor').replace('800.000', '2599.998')
    xeon = xeon.replace('avx2', 'avx2 avx512f amx_tile')
    assert benchmark.analytic_peak(xeon, cores=2)['flops'] == pytest.approx(2 * 2.599998e9 * 64)
    unknown = benchmark.analytic_peak(INTEL.replace(' fma', ''), cores=4)
    assert unknown['flops'] is None and 'unknown' in unknown['how']
    assert benchmark.analytic_peak('', cores=1)['flops'] is None
    assert benchmark.physical_cores(EPYC) >= 1


def test_tiny_run_has_a_line_per_algorithm(tmp_path):
    out_json = tmp_path / 'bench.json'
    args = ['scripts/benchmark.py', '--quick', '--uratio=1', '--nopipeline', f'--json={out_json}']
    out = run_cli(args).stdout
    for name in benchmark.ALGORITHMS:
        assert re.search(rf'^{name} +off +\d+ +[\d.]+ +[\d.]+ +[\d.]+ +[\d.]+ ', out, re.M), out
    assert re.search(r'^analytic peak: ([\d.]+|unknown) GFLOP/s', out, re.M), out
    assert re.search(r'^timed matmul: +[\d.]+ GFLOP/s \(256x256 float32', out, re.M), out
    assert re.search(r'^predict +off +[\d.]+', out, re.M), out
    ceiling = r'^realmix convolutions alone \(\d+ distinct, xla off\): [\d.]+ GFLOP/s = [\d.]+% of'
    assert re.search(ceiling, out, re.M), out
    report = json.loads(out_json.read_text())
    rows = {row['name']: row for row in report['steps']}
    assert report['ceiling']['flops'] < rows['realmix']['flops']  # the convolutions are most, not all, of the FLOPs
    assert list(rows) == list(benchmark.ALGORITHMS)
    # Images per step at batch 4, uratio 1: labelled + views x 4 unlabelled (FixMatch: weak and strong views).
    expected = {'realmix': 12, 'mixmatch': 12, 'fixmatch': 12, 'mixup': 8, 'vat': 8, 'fs_mixup': 4}
    assert {k: rows[k]['images'] for k in expected} == expected
    for row in rows.values():
        assert row['flops'] > 0 and row['ratio'] > 0 and row['share_of_matmul'] > 0
    # RealMix trains 3B rows and guesses labels on 2B more: more work than the supervised step on 3B.
    assert rows['realmix']['flops'] > rows['pi_model']['flops']
    again = run_cli(args, check=False)
    assert again.returncode == 1 and 'already exists' in again.stderr and 'Traceback' not in again.stderr


def test_mixed_precision_skips_vat_with_its_reason():
    args = ['scripts/benchmark.py', '--quick', '--algorithms=vat,pi_model', '--mixed_precision', '--nopipeline']
    out = run_cli(args).stdout
    assert re.search(r'^vat +skipped: --mixed_precision: VAT moves its inputs by 1e-6', out, re.M), out
    assert re.search(r'^pi_model +off +\d+ ', out, re.M), out


def test_bad_options_are_one_line_errors():
    for values, words in (
        ({'channels': 2}, '--channels=2'),
        ({'algorithms': 'realmix,foo'}, 'unknown foo'),
        ({'steps': 0}, 'must be positive'),
    ):
        with pytest.raises(benchmark.UserError, match=words):
            benchmark.check(benchmark.options(**values))
    assert benchmark.options(quick=True, batch=8).batch == 8 and benchmark.options(quick=True).img_size == 8


def test_xla_step_matches_the_eager_step(tmp_path):
    """FSBaseline (no random draw in its step): the loss and gradients of one batch, and the weights after one
    whole step (Adam, weight decay, EMA), agree between the eager step and the jit-compiled (XLA) one."""
    dataset = benchmark.synthetic_dataset(str(tmp_path), 16, 8, 3, 4, 'none')
    algorithm = fs_baseline.FSBaseline
    trainers = []
    for xla in (False, True):  # same seed: same initial weights
        cfg = config_lib.build(algorithm, filters=4, repeat=1, batch=8, strategy='none', dataset='x', xla=xla)
        trainers.append(loop.Trainer(cfg, algorithm, dataset, replicas.get('none')))
    eager, compiled = trainers
    batch = benchmark.synthetic_batch(eager.input_signature(), dataset.nclass)
    for a, b in zip(eager.model.variables, compiled.model.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())

    grads, stats = eager._replica_step(batch[0], None)
    jit_grads, jit_stats = tf.function(compiled._replica_step, jit_compile=True)(batch[0], None)
    np.testing.assert_allclose(jit_stats['overall'].numpy(), stats['overall'].numpy(), rtol=1e-5)
    # (Conv biases before a batch norm have zero gradient in exact arithmetic: compare at the largest's scale.)
    scale = max(float(np.abs(g.numpy()).max()) for g in grads)
    for g, jit_g in zip(grads, jit_grads):
        np.testing.assert_allclose(jit_g.numpy(), g.numpy(), rtol=1e-3, atol=1e-5 * scale)

    eager_stats = eager._step(*batch)
    compiled_stats = compiled.compiled_step()(*batch)
    np.testing.assert_allclose(compiled_stats['overall'].numpy(), eager_stats['overall'].numpy(), rtol=1e-5)
    # Adam turns the rounding noise of those zero gradients into steps of up to lr: leave the conv biases out.
    for a, b in zip(compared(eager), compared(compiled)):
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-4, atol=1e-6)


def compared(trainer):
    """Variables of both models but the conv biases (their gradient is rounding noise: a batch norm follows)."""
    models_ = (trainer.model, trainer.ema_model)
    biases = {id(m.bias) for model in models_ for m in model.submodules if isinstance(m, models.Conv2D)}
    return [v for model in models_ for v in model.variables if id(v) not in biases]


def test_profile_events_are_grouped_by_op():
    assert benchmark._op_key('unit/conv/Conv2D:Conv2D', False) == 'Conv2D'
    assert benchmark._op_key('unit/conv/Conv2D:_FusedConv2D', False) == '_FusedConv2D'  # grappler's conv + bias
    assert benchmark._op_key('Conv2D_9.1', True) == 'xla:Conv2D'
    assert benchmark._op_key('multiply_add_fusion.78', True) == 'xla:multiply_add_fusion'
    for runtime in ('ExecutorState::Process', '__inference__step_12:__inference__step_12', 'EagerExecute'):
        assert benchmark._op_key(runtime, False) is None
    totals = benchmark.collections.Counter()
    # An op of 10 ps holding a nested one of 4 ps: self times 6 and 4; then a lone one of 3.
    benchmark._add_self_times([(0, 10, 'a'), (2, 6, 'b'), (12, 15, 'c')], totals)
    assert totals == {'a': 6, 'b': 4, 'c': 3}
