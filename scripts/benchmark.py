#!/usr/bin/env python3
"""Training speed of every algorithm's step, the input pipeline and evaluation, against the machine's peak.

    ./scripts/benchmark.py                                    # every algorithm, WRN-28-2, 32x32x3, batch 64
    ./scripts/benchmark.py --algorithms=realmix,fs_baseline --xla=both --json=bench.json
    ./scripts/benchmark.py --algorithms=realmix --steps=3 --profile=/tmp/trace   # + where the time goes
    ./scripts/benchmark.py --quick                            # tiny sizes: a smoke test in seconds

What is timed, in one process, each with the project's own code:
  step        each algorithm's compiled train step (libml/train/loop.py) on one fixed synthetic batch of the
              shapes `Trainer.input_signature()` gives: B labelled + views x uratio x B unlabelled images
              (RealMix and MixMatch 3B, FixMatch (1 + 2 uratio) B, MixUp 2B, ...). Each algorithm runs
              with its own defaults (FixMatch: uratio 7) unless --uratio is given.
  supervised  the fully supervised step (fs_baseline.py) on as many labelled images as that step takes,
              timed in alternation with it and a float32 matmul (step, supervised, matmul, step, ...) so
              that all three see the same load: "ratio" = step img/s / supervised img/s, "/matmul" =
              step FLOP/s / matmul FLOP/s.
  pipeline    the algorithm's training input streams alone (`Trainer.train_streams`: decode, augment,
              batch) over synthetic PNG records, in img/s of the same image count.
  evaluation  `evaluation.Predictor` over the synthetic test file (decode + forward pass).
Times are medians over --steps rounds, after two untimed warm-up calls (the first traces/compiles).

FLOPs are counted, not estimated: 2 x the multiply-adds of every Conv2D, Conv2DBackpropInput,
Conv2DBackpropFilter and MatMul in the step's traced graph that its outputs and updates need (padding
included; batch norm, activations and the optimiser's element-wise work are not counted). So every
forward pass, label-guess pass and gradient an algorithm computes is counted as it is.

Peak: the analytic FMA peak, cores x clock x FMA units x fp32 lanes x 2 (from /proc/cpuinfo: the model
name or "cpu MHz" for the clock, the flags for the vector width; "unknown" where it cannot be known),
beside a timed 2048x2048 float32 matmul (at the start and the end of the run, and in every step's
rounds). Every step's FLOP/s is given as a share of both.
"""

import collections
import glob
import os
import re
import tempfile
import time
import types

from libml import algorithm
from libml import config as config_lib
from libml.data.dataset import DataSet
from libml.data.records import encode_png, serialize_example
from libml.data.synthetic import synthetic_images
from libml.errors import UserError, cli_main
from libml.files import check_writable, write_json
from libml.report import evaluation
from libml.train import loop, replicas

import numpy as np
import tensorflow as tf
from absl import app, flags

import algorithms


def benchmark_order(methods):
    """The registered methods as the benchmark lists them: semi-supervised before the baselines, each
    algorithm file's own method (key = its module, e.g. realmix) first, then the variants it declares
    (mixmatch), algorithms in rank order."""
    first = {}
    for m in methods:
        first[m.algorithm] = min(first.get(m.algorithm, m.rank), m.rank)

    def key(m):
        own = m.key == m.algorithm.__module__.rsplit('.', 1)[-1]
        return m.baseline, first[m.algorithm], not own, m.rank

    return sorted(methods, key=key)


# name -> (Algorithm class, settings that make it that method): every registered method
# (libml/algorithm.py; each algorithm file declares its own)
ALGORITHMS = {m.key: (m.algorithm, m.settings) for m in benchmark_order(algorithms.load())}
REFERENCE = algorithm.method('Supervised').algorithm
WARMUP = 2
# --quick: a model and data small enough for a smoke test of every line in seconds.
QUICK = {'img_size': 8, 'filters': 4, 'repeat': 1, 'batch': 4, 'steps': 1, 'records': 32, 'matmul': 256}


# --------------------------------------------------------------------------- FLOPs


def op_flops(op):
    """FLOPs of one graph op: 2 x multiply-adds of a convolution (and its two gradients) or a matmul; else 0.

    Needs static shapes. Conv2D (x, kernel [kh, kw, cin, cout]) -> y: 2 |y| kh kw cin; its gradients do
    the same work: Conv2DBackpropInput (sizes, kernel, dy) and Conv2DBackpropFilter (x, sizes, dy) -> dkernel:
    2 |dy| kh kw cin. MatMul / BatchMatMul a [.., m, k] b [.., k, n]: 2 |out| k.
    """
    if op.type == 'Conv2D':
        kh, kw, cin, _ = op.inputs[1].shape
        return 2 * op.outputs[0].shape.num_elements() * kh * kw * cin
    if op.type == 'Conv2DBackpropInput':
        kh, kw, cin, _ = op.inputs[1].shape
        return 2 * op.inputs[2].shape.num_elements() * kh * kw * cin
    if op.type == 'Conv2DBackpropFilter':
        kh, kw, cin, _ = op.outputs[0].shape
        return 2 * op.inputs[2].shape.num_elements() * kh * kw * cin
    if op.type in ('MatMul', 'BatchMatMulV2', 'BatchMatMulV3'):
        a = op.inputs[0].shape
        transposed = op.get_attr('transpose_a' if op.type == 'MatMul' else 'adj_x')
        return 2 * op.outputs[0].shape.num_elements() * (a[-2] if transposed else a[-1])
    return 0


def needed_ops(graph):
    """Ops of a traced function graph that its outputs and side effects depend on (what runs: the
    runtime prunes the rest, e.g. the gradient of the first convolution with respect to the images)."""
    seen, stack = set(), [t.op for t in graph.outputs] + list(graph.control_outputs)
    while stack:
        op = stack.pop()
        if op not in seen:
            seen.add(op)
            stack.extend(t.op for t in op.inputs)
            stack.extend(op.control_inputs)
    return seen


def graph_flops(function):
    """FLOPs of one call of a `tf.function` with a fixed input signature (counted in its traced graph)."""
    return sum(op_flops(op) for op in needed_ops(function.get_concrete_function().graph))


def forward_flops(model, shape):
    """FLOPs of one image through `model` in inference mode (shape = (H, W, C))."""
    fn = tf.function(lambda x: model(x, training=False), input_signature=[tf.TensorSpec((1,) + tuple(shape))])
    return graph_flops(fn)


CONV_TYPES = ('Conv2D', 'Conv2DBackpropInput', 'Conv2DBackpropFilter')


def conv_kernels(function):
    """The distinct convolutions a traced step runs: {(op type, shapes, strides, padding): (count, FLOPs of one)}.

    shapes = the op's [N, H, W, C] input, its kernel [kh, kw, cin, cout] and its output, all static.
    """
    kernels = {}
    for op in needed_ops(function.get_concrete_function().graph):
        if op.type not in CONV_TYPES:
            continue
        x = op.inputs[0].shape if op.type != 'Conv2DBackpropInput' else op.outputs[0].shape
        kernel = op.inputs[1].shape if op.type != 'Conv2DBackpropFilter' else op.outputs[0].shape
        y = op.outputs[0].shape if op.type == 'Conv2D' else op.inputs[2].shape
        key = (op.type, (tuple(x), tuple(kernel), tuple(y)), tuple(op.get_attr('strides')), op.get_attr('padding'))
        count, flops = kernels.get(key, (0, op_flops(op)))
        kernels[key] = (count + 1, flops)
    return kernels


def kernel_call(key):
    """(function, args) running one convolution of `conv_kernels` alone on random float32 inputs of its shapes."""
    kind, (x, kernel, y), strides, padding = key
    padding = padding.decode() if isinstance(padding, bytes) else padding
    conv = dict(strides=list(strides), padding=padding)
    if kind == 'Conv2D':
        fn = lambda a, w: tf.raw_ops.Conv2D(input=a, filter=w, **conv)[0, 0, 0, 0]
        shapes = (x, kernel)
    elif kind == 'Conv2DBackpropInput':
        fn = lambda w, dy: tf.raw_ops.Conv2DBackpropInput(input_sizes=x, filter=w, out_backprop=dy, **conv)[0, 0, 0, 0]
        shapes = (kernel, y)
    else:
        fn = lambda a, dy: tf.raw_ops.Conv2DBackpropFilter(input=a, filter_sizes=kernel, out_backprop=dy, **conv)[
            0, 0, 0, 0
        ]
        shapes = (x, y)
    return tf.function(fn), tuple(tf.random.uniform(s) for s in shapes)


def conv_ceiling(function, matmul, rounds):
    """The step's convolutions alone, each timed in rounds with `matmul` (function, args, FLOPs).

    Returns {'kernels': distinct convolutions, 'flops', 'seconds' (sum of count x median time of each),
    'flops_per_s', 'matmul_flops_per_s'}: the step computes these and more, so its FLOP/s cannot exceed
    this ceiling by much (only by overlapping kernels on different cores).
    """
    kernels = conv_kernels(function)
    calls = [kernel_call(key) for key in kernels] + [matmul[:2]]
    logger, level = tf.get_logger(), tf.get_logger().level
    logger.setLevel('ERROR')  # one function per shape, traced once each: not the retracing TensorFlow warns of
    try:
        times = time_rounds(calls, rounds)
    finally:
        logger.setLevel(level)
    flops = sum(count * one for count, one in kernels.values())
    seconds = sum(count * t for (count, _), t in zip(kernels.values(), times))
    return {
        'kernels': len(kernels),
        'flops': flops,
        'seconds': seconds,
        'flops_per_s': flops / seconds,
        'matmul_flops_per_s': matmul[2] / times[-1],
    }


# --------------------------------------------------------------------------- peak


def read_cpuinfo(path='/proc/cpuinfo'):
    """The text of /proc/cpuinfo, '' where there is none."""
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ''


def _first(blocks, key):
    return next((b[key] for b in blocks if key in b), '')


def fma_units(vendor, family, model, flag_set):
    """(FMA units per core, fp32 lanes each) the CPU is known to have, or (None, None).

    AMD Zen 1 (family 23, model < 0x30): 2 x 128-bit; Zen 2 (family 23) and Zen 3/4 (family 25, AVX-512
    split into two 256-bit halves on Zen 4): 2 x 256-bit; Zen 5 (family 26): 2 x 512-bit with AVX-512.
    Intel cores with FMA and without AVX-512 (Haswell to Alder Lake P-cores): 2 x 256-bit; with AMX
    (Sapphire Rapids and later Xeon cores, whatever model number a VM reports): 2 x 512-bit; other
    AVX-512 cores have 1 or 2 units depending on the part: unknown.
    """
    if 'fma' not in flag_set:
        return None, None
    if vendor == 'AuthenticAMD':
        if family == 23:
            return 2, 4 if model < 0x30 else 8
        if family == 25:
            return 2, 8
        if family == 26:
            return 2, 16 if 'avx512f' in flag_set else 8
    if vendor == 'GenuineIntel' and 'avx512f' in flag_set and 'amx_tile' in flag_set:
        return 2, 16
    if vendor == 'GenuineIntel' and 'avx2' in flag_set and 'avx512f' not in flag_set:
        return 2, 8
    return None, None


def analytic_peak(cpuinfo, cores):
    """The CPU's fp32 FMA peak from /proc/cpuinfo text: dict with flops (FLOP/s or None), per_cycle
    (FLOP/cycle/core), clock_hz, clock_source and `how` (one line saying where each factor came from).

    FLOP/s = cores x clock x FMA units x fp32 lanes x 2 (a fused multiply-add is 2 FLOPs). The clock is
    the one in the model name ('@ 2.45GHz') or else the kernel's 'cpu MHz' (in a VM, the rate the host
    reports; turbo clocks above it are not counted).
    """
    blocks = [dict(re.findall(r'^([^\t:]+?)\s*:\s*(.*)$', b, re.M)) for b in cpuinfo.split('\n\n') if b.strip()]
    name = _first(blocks, 'model name') or 'unknown CPU'
    vendor = _first(blocks, 'vendor_id')
    flag_set = set(_first(blocks, 'flags').split())
    family, model = (int(_first(blocks, k) or -1) for k in ('cpu family', 'model'))
    clock_hz, clock_source = None, 'unknown'
    named = re.search(r'@\s*([\d.]+)\s*GHz', name)
    if named:
        clock_hz, clock_source = float(named.group(1)) * 1e9, f'model name "{name}"'
    elif _first(blocks, 'cpu MHz'):
        clock_hz = float(_first(blocks, 'cpu MHz')) * 1e6
        clock_source = '/proc/cpuinfo "cpu MHz" (base rate the kernel reports; turbo not counted)'
    units, lanes = fma_units(vendor, family, model, flag_set)
    width = 'AVX-512' if 'avx512f' in flag_set else 'AVX2' if 'avx2' in flag_set else 'SSE' if flag_set else '?'
    per_cycle = 2 * units * lanes if units else None
    flops = cores * clock_hz * per_cycle if per_cycle and clock_hz else None
    factors = (
        f'{units} FMA units x {lanes} fp32 lanes x 2 = {per_cycle} FLOP/cycle/core'
        if per_cycle
        else 'FMA units per core unknown for this CPU'
    )
    clock = f'{clock_hz / 1e9:.3f} GHz from {clock_source}' if clock_hz else 'clock unknown'
    width += ' + FMA' if 'fma' in flag_set else ''
    how = f'{name} (vendor {vendor or "?"}, family {family}, model {model}; {width}): {factors}; {cores} cores; {clock}'
    return {
        'flops': flops,
        'per_cycle': per_cycle,
        'clock_hz': clock_hz,
        'clock_source': clock_source,
        'cores': cores,
        'cpu': name,
        'how': how,
    }


def physical_cores(cpuinfo):
    """Cores this process may run on, counting SMT siblings once when /proc/cpuinfo says which they are."""
    allowed = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()
    blocks = [dict(re.findall(r'^([^\t:]+?)\s*:\s*(.*)$', b, re.M)) for b in cpuinfo.split('\n\n') if b.strip()]
    pairs = {(b.get('physical id'), b.get('core id')) for b in blocks}
    if blocks and all(b.get('core id') is not None for b in blocks) and len(pairs) < len(blocks):
        return max(1, allowed * len(pairs) // len(blocks))
    return allowed


def onednn_enabled():
    """Whether TensorFlow's CPU kernels use oneDNN (TF_ENABLE_ONEDNN_OPTS: libml turns it on unless it is set)."""
    from tensorflow.python.util import _pywrap_util_port

    return bool(_pywrap_util_port.IsMklEnabled())


def matmul_call(n):
    """(function, args, FLOPs) of an n x n float32 matmul (reading one element waits for all of it)."""
    fn = tf.function(lambda x: tf.matmul(x, x)[0, 0])
    return fn, (tf.random.uniform([n, n]),), 2 * n**3


def matmul_flops(n, seconds):
    """FLOP/s of a timed n x n float32 matmul (median call over >= 3 calls and `seconds`)."""
    fn, args, flops = matmul_call(n)
    fn(*args).numpy()
    times, began = [], time.perf_counter()
    while len(times) < 3 or time.perf_counter() - began < seconds:
        start = time.perf_counter()
        fn(*args).numpy()
        times.append(time.perf_counter() - start)
    return flops / float(np.median(times))


# --------------------------------------------------------------------------- data and timing


def synthetic_dataset(folder, count, size, channels, nclass, augment):
    """A `DataSet` over synthetic label, unlabel and test TFRecords written into `folder`."""
    paths = [os.path.join(folder, f'synthetic-{kind}.tfrecord') for kind in ('label', 'unlabel', 'test')]
    for i, path in enumerate(paths):
        labels = [-1] * count if 'unlabel' in path else [j % nclass for j in range(count)]
        with tf.io.TFRecordWriter(path) as writer:
            for image, label in zip(synthetic_images(np.random.default_rng(i), count, size, channels), labels):
                writer.write(serialize_example(encode_png(image), label))
    label, unlabel, test = paths
    return DataSet('synthetic', label, test, unlabel, augment=augment, nclass=nclass, img_size=size)


def synthetic_batch(signature, nclass, seed=0):
    """Fixed step inputs of `signature`: images uniform in [-1, 1], labels in [0, nclass) (-1 unlabelled),
    unlabelled indices 0, 1, ... (the stream's first images)."""
    rng = np.random.RandomState(seed)
    batch = []
    for k, (images, labels, *indices) in enumerate(signature):
        x = tf.constant(rng.uniform(-1, 1, images.shape).astype(np.float32))
        y = tf.constant(rng.randint(0, nclass, labels.shape) if k == 0 else np.full(labels.shape, -1), tf.int64)
        batch.append((x, y, *(tf.range(i.shape[0], dtype=tf.int64) for i in indices)))
    return batch


def step_images(signature):
    """Images one step takes: labelled + views x unlabelled."""
    return sum(int(np.prod(spec[0].shape[:-3])) for spec in signature)


def wait(value):
    """Blocks until `value` (a tensor or a structure of them) is computed."""
    for tensor in tf.nest.flatten(value):
        np.asarray(tensor)


def time_rounds(calls, rounds):
    """Median seconds of each (function, args) of `calls`, called in turn for `rounds` rounds (after WARMUP)."""
    for fn, args in calls:
        for _ in range(WARMUP):
            wait(fn(*args))
    times = [[] for _ in calls]
    for _ in range(rounds):
        for (fn, args), spent in zip(calls, times):
            began = time.perf_counter()
            wait(fn(*args))
            spent.append(time.perf_counter() - began)
    return [float(np.median(t)) for t in times]


def time_pipeline(trainer, images_per_step, rounds, seconds):
    """img/s of `trainer`'s training streams: the batches of one step drawn `rounds` times and >= `seconds`."""
    streams = trainer.train_streams(0)
    draw = lambda: [next(s) for s in streams]
    for _ in range(WARMUP):
        wait(draw())
    count, began = 0, time.perf_counter()
    while count < rounds or time.perf_counter() - began < seconds:
        wait(draw())
        count += 1
    return images_per_step * count / (time.perf_counter() - began)


def time_evaluation(trainer, dataset, batch, xla):
    """(img/s, images) of `evaluation.Predictor` over the test file (decode + forward pass), second pass."""
    predictor = evaluation.Predictor(xla)
    run = lambda: predictor.predict(trainer.ema_model, dataset.eval_test(batch), dataset.nclass)
    run()
    began = time.perf_counter()
    count = len(run().labels)
    return count / (time.perf_counter() - began), count


# --------------------------------------------------------------------------- profile


def top_ops(folder, count=12):
    """[(op, seconds, share)] of the ops that took the most self time in the newest trace under `folder`.

    Reads the XSpace (`*.xplane.pb`) tf.profiler wrote. TensorFlow ops are events named 'name:Type',
    grouped by Type; XLA's are events with an 'hlo_op' stat, grouped by HLO instruction name without its
    numeric suffixes ('xla:Conv2D' for 'Conv2D_9.1', 'xla:multiply_add_fusion'). Self time = duration
    less the op events nested in it on the same thread; shares are of the traced op time.
    """
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    paths = sorted(glob.glob(os.path.join(folder, 'plugins', 'profile', '*', '*.xplane.pb')), key=os.path.getmtime)
    if not paths:
        raise UserError(f'--profile={folder}: tf.profiler wrote no trace there')
    space = xplane_pb2.XSpace()
    with open(paths[-1], 'rb') as f:
        space.ParseFromString(f.read())
    totals = collections.Counter()
    for plane in space.planes:
        hlo = {k for k, v in plane.stat_metadata.items() if v.name == 'hlo_op'}
        for line in plane.lines:
            events = []
            for event in line.events:
                meta = plane.event_metadata[event.metadata_id]
                is_hlo = any(s.metadata_id in hlo for s in list(event.stats) + list(meta.stats))
                key = _op_key(meta.name, is_hlo)
                if key:
                    events.append((event.offset_ps, event.offset_ps + event.duration_ps, key))
            _add_self_times(sorted(events, key=lambda e: (e[0], -e[1])), totals)
    total = sum(totals.values()) or 1
    return [(key, ps / 1e12, ps / total) for key, ps in totals.most_common(count)]


def _op_key(name, is_hlo):
    """'Conv2D' for the TensorFlow op event 'unit/conv/Conv2D:Conv2D', 'xla:Conv2D' for the HLO event
    'Conv2D_9.1'; None for the runtime's own events ('ExecutorState::Process', '__inference_f:...')."""
    if is_hlo:
        return 'xla:' + re.sub(r'(_\d+)?(\.\d+)*$', '', name)
    match = re.fullmatch(r'[^:\s]+:(_?[A-Za-z][A-Za-z0-9_]*)', name)
    return match.group(1) if match else None


def _add_self_times(events, totals):
    """Adds to `totals` the self time of each (begin, end, key) of one thread, sorted by begin."""
    stack = []  # [end, key, self time] of the enclosing events
    for begin, end, key in events:
        while stack and stack[-1][0] <= begin:
            _, done, spent = stack.pop()
            totals[done] += spent
        if stack:
            stack[-1][2] -= min(end, stack[-1][0]) - begin
        stack.append([end, key, end - begin])
    for _, done, spent in stack:
        totals[done] += spent


def profile_step(step, batch, folder):
    """Traces one call of `step(*batch)` (already warmed up) into `folder`; returns `top_ops`."""
    wait(step(*batch))
    tf.profiler.experimental.start(folder)
    try:
        wait(step(*batch))
    finally:
        tf.profiler.experimental.stop()
    return top_ops(folder)


# --------------------------------------------------------------------------- main


# The command line: (name, default, help); enums (name, default, help, choices).
FLAGS_TABLE = (
    ('algorithms', 'all', f'Comma-separated algorithms to time, or all: {", ".join(ALGORITHMS)}.'),
    ('arch', 'resnet', 'Model (resnet = WRN-28-2 at the default sizes).', ('resnet', 'convnet', 'shake')),
    ('filters', 32, 'Width of the first stage.'),
    ('repeat', 4, 'Residual units per stage.'),
    ('img_size', 32, 'Side of the synthetic images.'),
    ('channels', 3, 'Channels of the synthetic images (1 or 3).'),
    ('nclass', 10, 'Number of classes.'),
    ('batch', 64, 'Labelled images per step (--batch of the algorithms).'),
    ('uratio', 0, "Unlabelled images per step = uratio x batch; 0 = each algorithm's default."),
    ('steps', 5, 'Timed rounds per measurement (the median is reported).'),
    ('xla', 'off', 'Time the steps and evaluation without XLA, with it (jit_compile), or both.', ('off', 'on', 'both')),
    ('mixed_precision', False, 'Time with --mixed_precision (bfloat16 on CPUs that have it).'),
    ('augment', 'cifar10', 'Augmentation of the timed input pipeline.'),
    ('records', 1024, 'Synthetic images per file (labelled, unlabelled, test).'),
    ('eval_batch', 256, 'Batch of the timed evaluation.'),
    ('matmul', 2048, 'Side of the timed float32 matmul.'),
    ('pipeline', True, 'Time the input pipelines (--nopipeline: steps only).'),
    (
        'ceiling',
        True,
        "Also time the first algorithm's convolutions alone, each in rounds with the matmul: the FLOP/s its "
        'step could reach if nothing but its convolutions ran (--noceiling: skip).',
    ),
    (
        'profile',
        '',
        'Also trace one step of the first algorithm with tf.profiler into this folder and print the '
        'ops that take the most time.',
    ),
    ('quick', False, f'Tiny sizes for a smoke test: {QUICK} (explicit flags win).'),
    ('json', '', 'Also write every figure to this JSON file.'),
    ('overwrite', False, 'Replace an existing --json file.'),
)
DEFAULTS = {row[0]: row[1] for row in FLAGS_TABLE}


def define_flags():
    """Defines FLAGS_TABLE as absl flags (when run as a script: importing this module defines none)."""
    for name, default, text, *choices in FLAGS_TABLE:
        if choices:
            flags.DEFINE_enum(name, default, list(choices[0]), text)
        elif isinstance(default, bool):
            flags.DEFINE_boolean(name, default, text)
        elif isinstance(default, int):
            flags.DEFINE_integer(name, default, text)
        else:
            flags.DEFINE_string(name, default, text)


def options(quick=False, **values):
    """The run's options: DEFAULTS, then --quick's tiny sizes, then `values` (explicit flags win)."""
    return types.SimpleNamespace(**{**DEFAULTS, **(QUICK if quick else {}), 'quick': quick, **values})


def check(o):
    """UserError for options the benchmark cannot run with; returns the chosen algorithm names."""
    for name in ('batch', 'steps', 'records', 'filters', 'repeat', 'eval_batch', 'matmul'):
        if getattr(o, name) <= 0:
            raise UserError(f'--{name}={getattr(o, name)}: must be positive')
    if o.uratio < 0:
        raise UserError(f"--uratio={o.uratio}: must be >= 0 (0 = each algorithm's default)")
    if o.channels not in (1, 3):
        raise UserError(f'--channels={o.channels}: expected 1 or 3')
    if o.img_size < 8:
        raise UserError(f'--img_size={o.img_size}: expected at least 8')
    if not 2 <= o.nclass <= o.records:
        raise UserError(f'--nclass={o.nclass}: expected between 2 and --records={o.records}')
    names = list(ALGORITHMS) if o.algorithms == 'all' else [a.strip() for a in o.algorithms.split(',')]
    unknown = [a for a in names if a not in ALGORITHMS]
    if unknown or not names:
        raise UserError(
            f'--algorithms={o.algorithms}: unknown {", ".join(unknown) or "(none)"}; expected all or '
            f'some of {", ".join(ALGORITHMS)}'
        )
    if o.json:
        check_writable(o.json, o.overwrite)
    return names


class Bench:
    """Builds trainers of the options' model on the synthetic data, on one device."""

    def __init__(self, o, dataset):
        self.o, self.dataset = o, dataset
        self.strategy = replicas.get('none')
        self.references = {}

    def trainer(self, algorithm, xla, **settings):
        o = self.o
        values = {
            'arch': o.arch,
            'filters': o.filters,
            'repeat': o.repeat,
            'batch': o.batch,
            'xla': xla,
            'mixed_precision': o.mixed_precision,
            'strategy': 'none',
            'augment': o.augment,
            'dataset': 'synthetic',
            **settings,
        }
        if o.uratio and algorithm.views:
            values['uratio'] = o.uratio
        return loop.Trainer(config_lib.build(algorithm, **values), algorithm, self.dataset, self.strategy)

    def compiled(self, trainer):
        """(step, fixed batch, images per step, FLOPs per step)."""
        signature = trainer.input_signature()
        step = trainer.compiled_step()
        return step, synthetic_batch(signature, self.dataset.nclass), step_images(signature), graph_flops(step)

    def reference(self, images, xla):
        """The supervised step on `images` labelled images (built once per size)."""
        if (images, xla) not in self.references:
            self.references[(images, xla)] = self.compiled(self.trainer(REFERENCE, xla, batch=images))
        return self.references[(images, xla)]


def run(o):
    """Times everything the options ask for; prints the tables and returns the report (a dict)."""
    names = check(o)
    cpuinfo = read_cpuinfo()
    peak = analytic_peak(cpuinfo, physical_cores(cpuinfo))
    shape = (o.img_size, o.img_size, o.channels)
    xlas = {'off': [False], 'on': [True], 'both': [False, True]}[o.xla]
    matmul_seconds = 0.2 if o.quick else 2.0
    report = {
        'options': vars(o),
        'algorithms': names,
        'tensorflow': tf.__version__,
        'load_average_start': os.getloadavg(),
        'peak': peak,
        'onednn': onednn_enabled(),
    }
    print(
        f'benchmark: {o.arch} (filters {o.filters}, repeat {o.repeat}) on {shape[0]}x{shape[1]}x{shape[2]}, '
        f'{o.nclass} classes, batch {o.batch}; TensorFlow {tf.__version__}, oneDNN '
        f'{"on" if report["onednn"] else "off"}; load average {_load()} on {os.cpu_count()} CPUs',
        flush=True,
    )
    print(f'analytic peak: {_giga(peak["flops"])} GFLOP/s = {peak["how"]}', flush=True)
    matmul = matmul_call(o.matmul)
    matmul_start = matmul_flops(o.matmul, matmul_seconds)
    print(
        f'timed matmul:  {matmul_start / 1e9:.1f} GFLOP/s ({o.matmul}x{o.matmul} float32, '
        f'{_share(matmul_start, peak["flops"])} of the analytic peak)',
        flush=True,
    )
    rows, pipelines, evaluations, profile, ceiling = [], {}, [], None, None
    with tempfile.TemporaryDirectory(prefix='benchmark_') as folder:
        dataset = synthetic_dataset(folder, o.records, o.img_size, o.channels, o.nclass, o.augment)
        bench = Bench(o, dataset)
        for xla in xlas:
            probe = bench.trainer(REFERENCE, xla)
            rate, images = time_evaluation(probe, dataset, o.eval_batch, xla)
            flops = forward_flops(probe.model, shape)
            evaluations.append(
                {'xla': xla, 'img_per_s': rate, 'images': images, 'flops_per_image': flops, 'flops_per_s': rate * flops}
            )
        print(
            f'\n{"algorithm":13s} {"xla":3s} {"img/step":>8s} {"s/step":>7s} {"img/s":>8s} {"superv.":>8s} '
            f'{"ratio":>5s} {"GFLOP/step":>10s} {"GFLOP/s":>8s} {"/matmul":>7s} {"/peak":>6s} {"pipeline":>8s}',
            flush=True,
        )
        for name in names:
            algorithm, own = ALGORITHMS[name]
            for xla in xlas:
                try:
                    trainer = bench.trainer(algorithm, xla, **own)
                except UserError as e:  # settings the algorithm refuses (VAT with --mixed_precision)
                    print(f'{name:13s} skipped: {e}', flush=True)
                    break
                step, batch, images, flops = bench.compiled(trainer)
                ref_step, ref_batch, _, ref_flops = bench.reference(images, xla)
                calls = [(step, batch), (ref_step, ref_batch), matmul[:2]]
                seconds, ref_seconds, mm_seconds = time_rounds(calls, o.steps)
                key = (trainer.algorithm.views, trainer.config.uratio)
                if o.pipeline and key not in pipelines:
                    pipelines[key] = time_pipeline(trainer, images, max(4 * o.steps, 8), 0.1 if o.quick else 1.0)
                row = {
                    'name': name,
                    'algorithm': algorithm.name,
                    'xla': xla,
                    'images': images,
                    'seconds': seconds,
                    'img_per_s': images / seconds,
                    'supervised_img_per_s': images / ref_seconds,
                    'ratio': ref_seconds / seconds,
                    'flops': flops,
                    'flops_per_s': flops / seconds,
                    'supervised_flops_per_s': ref_flops / ref_seconds,
                    'matmul_flops_per_s': matmul[2] / mm_seconds,
                    'pipeline_img_per_s': pipelines.get(key),
                }
                rows.append(row)
                print(_row_line(row, peak['flops']), flush=True)
                if o.ceiling and ceiling is None and not xla:
                    ceiling = dict(conv_ceiling(step, matmul, o.steps), algorithm=name)
                if o.profile and profile is None:
                    profile = {
                        'algorithm': name,
                        'xla': xla,
                        'folder': o.profile,
                        'ops': profile_step(step, batch, o.profile),
                    }
    matmul_end = matmul_flops(o.matmul, matmul_seconds)
    for row in rows:
        row['share_of_matmul'] = row['flops_per_s'] / row['matmul_flops_per_s']
        row['share_of_peak'] = row['flops_per_s'] / peak['flops'] if peak['flops'] else None
    print(f'\n{"evaluation":13s} {"xla":3s} {"img/s":>8s} {"GFLOP/s":>8s} {"/matmul":>7s} {"/peak":>6s}')
    for e in evaluations:
        e['share_of_matmul'] = e['flops_per_s'] / matmul_start
        print(
            f'{"predict":13s} {"on" if e["xla"] else "off":3s} {e["img_per_s"]:8.1f} {e["flops_per_s"] / 1e9:8.2f} '
            f'{_share(e["flops_per_s"], matmul_start):>7s} {_share(e["flops_per_s"], peak["flops"]):>6s}  '
            f'({e["images"]} test images, decode + forward)'
        )
    print(
        f"\ntimed matmul: {matmul_start / 1e9:.1f} GFLOP/s at the start (evaluation's /matmul), "
        f'{matmul_end / 1e9:.1f} at the end; load average now {_load()}'
    )
    print(
        'ratio = step img/s / supervised (fs_baseline) img/s on the same number of images; /matmul = step FLOP/s / '
        "matmul FLOP/s; the three timed alternately; pipeline = img/s of the step's input streams alone"
    )
    if ceiling:
        print(
            f'\n{ceiling["algorithm"]} convolutions alone ({ceiling["kernels"]} distinct, xla off): '
            f'{ceiling["flops_per_s"] / 1e9:.2f} GFLOP/s = '
            f'{_share(ceiling["flops_per_s"], ceiling["matmul_flops_per_s"])} of the matmul timed in the same rounds; '
            f'{ceiling["flops"] / 1e9:.3f} GFLOP in {ceiling["seconds"]:.3f} s'
        )
    if profile:
        print(
            f'\nprofile of one {profile["algorithm"]} step (xla {"on" if profile["xla"] else "off"}), trace in '
            f'{profile["folder"]}: top ops by self time'
        )
        for op, seconds, share in profile['ops']:
            print(f'  {op:40s} {seconds * 1e3:9.1f} ms {100 * share:5.1f}%')
    report.update(
        matmul_flops_start=matmul_start,
        matmul_flops_end=matmul_end,
        steps=rows,
        evaluation=evaluations,
        profile=profile,
        ceiling=ceiling,
        load_average_end=os.getloadavg(),
        pipelines=[{'views': list(k[0]), 'uratio': k[1], 'img_per_s': v} for k, v in pipelines.items()],
    )
    if o.json:
        write_json(o.json, report, overwrite=o.overwrite)
        print(f'Wrote {o.json}')
    return report


def _load():
    return ' '.join(f'{v:.2f}' for v in os.getloadavg())


def _giga(value):
    return f'{value / 1e9:.1f}' if value else 'unknown'


def _share(value, of):
    return f'{100 * value / of:.1f}%' if of else '?'


def _row_line(row, peak):
    pipeline = f'{row["pipeline_img_per_s"]:8.1f}' if row['pipeline_img_per_s'] else f'{"-":>8s}'
    return (
        f'{row["name"]:13s} {"on" if row["xla"] else "off":3s} {row["images"]:8d} {row["seconds"]:7.3f} '
        f'{row["img_per_s"]:8.1f} {row["supervised_img_per_s"]:8.1f} {row["ratio"]:5.2f} '
        f'{row["flops"] / 1e9:10.3f} {row["flops_per_s"] / 1e9:8.2f} '
        f'{_share(row["flops_per_s"], row["matmul_flops_per_s"]):>7s} '
        f'{_share(row["flops_per_s"], peak):>6s} {pipeline}'
    )


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
    FLAGS = flags.FLAGS
    explicit = {name: FLAGS[name].value for name in DEFAULTS if FLAGS[name].present and name != 'quick'}
    run(options(FLAGS.quick, **explicit))


if __name__ == '__main__':
    define_flags()
    app.run(cli_main(main))
