#!/usr/bin/env python3
"""Step-level parity check: the project's loss and gradient on one fixed batch against USB's.

    python -m scripts.parity.step_check          # every algorithm (needs make parity-env)
    python -m scripts.parity.step_check --algorithms=fixmatch,fullysupervised --json=step_check.json

For each algorithm: the project's TensorFlow WRN (table d's shape: 28x28x1, filters 16, repeat 2)
is built with its own initialisation, its weights (and, for Mean Teacher, a perturbed EMA copy)
are copied into the PyTorch twin, and one fixed batch goes through the project's
`Algorithm.loss(step, labelled, unlabelled)` in a GradientTape, as libml/train/loop.py calls it, and
through USB's `train_step` (scripts/parity/usb_step.py, in USB's venv). Printed: the largest
absolute difference of the loss and of the gradient (over every parameter, mapped by name).

Where a step draws random numbers, the draws are fixed on both sides: MixMatch's MixUp pairing
and lambda (USB draws one lambda per batch, the project one per row: the check uses one), VAT's
random direction. Variants marked `aligned` also patch, in this process only, one documented
design difference on the project's side, to show that it is the only one.
"""

import contextlib
import dataclasses
import json
import os
import subprocess
import sys
import tempfile

from libml import algorithm as algorithm_lib
from libml import maths, models, selection
from libml.errors import UserError, cli_main

import numpy as np
import tensorflow as tf
from absl import app, flags

from scripts.parity import project_side, spec, weights

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
USB_PYTHON = os.path.join(ROOT, '.venv-parity', 'bin', 'python')
SHAPE, NCLASS, SEED = (28, 28, 1), 10, 1
# 16 labelled images per step, a run of 1024 steps checked at step 256 (ramps at 0.625).
SCHEDULE = spec.Schedule(kimg=16, report_kimg=16, batch=16)
STEP = 256
# Float32 agreement of two implementations of the same sums: the loss to 1e-5 (relative above 1), the state
# to 1e-6, a gradient to 1e-4 or 1e-3 of that parameter's largest gradient (batch-norm sums over
# 240 x 28 x 28 values taken in another order move the stem's 0.1 gradients by about 1e-4).
TOLERANCE = dict(loss=1e-5, grad=1e-4, grad_share=1e-3, state=1e-6)

flags.DEFINE_string('algorithms', ','.join(spec.ALGORITHMS), 'Algorithms to check, comma-separated.')
flags.DEFINE_string('json', '', 'Also write the results to this JSON file.')
flags.DEFINE_string('usb_python', USB_PYTHON, "USB's Python (make parity-env).")
FLAGS = flags.FLAGS


# ------------------------------------------------------------------ the project's side, patched per variant


def _uda_loss_usb_form(weak_logits, strong_logits, confidence, temperature):
    """UDA's loss in USB's form: the weak view's probabilities q themselves as targets (T ignored) and
    cross-entropy, which is the project's KL plus the targets' entropy H(q) (no gradient)."""
    kl = _uda_loss(weak_logits, strong_logits, confidence, 1.0)
    q = tf.nn.softmax(tf.stop_gradient(tf.cast(weak_logits, tf.float32)))
    entropy = -tf.reduce_sum(q * tf.math.log(q), axis=-1)
    return kl._replace(loss=kl.loss + tf.reduce_mean(kl.mask * entropy))


_uda_loss = selection.uda_loss
VAT_XI = 1e-2  # the finite-difference step of the aligned VAT variant (both sides; the default 1e-6 is below
# float32's resolution of the two softmaxes it subtracts, so two float32 implementations draw different directions)
_vat_perturbation = maths.vat_perturbation


@contextlib.contextmanager
def patched(module, name, value):
    saved = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, saved)


# Per algorithm: [(variant, aligned patches [(module, attribute, value)], why)]; a patch whose module is None
# sets USB's argument `attribute` instead (`hyper/<attribute>` in the arrays).
VARIANTS = {
    'fullysupervised': [('as is', [], '')],
    'pimodel': [('as is', [], '')],
    'meanteacher': [('as is', [], '')],
    'pseudolabel': [('as is', [], '')],
    'fixmatch': [('as is', [], '')],
    'flexmatch': [('as is', [], '')],
    'freematch': [('as is', [], '')],
    'softmatch': [('as is', [], '')],
    'uda': [
        (
            'as is',
            [],
            'targets sharpened by T, KL (project, the authors) vs not sharpened (USB hooks/pseudo_label.py:46-51 '
            'ignores T for probabilities), cross-entropy (the same gradient)',
        ),
        ('aligned: targets not sharpened (T = 1), cross-entropy', [(selection, 'uda_loss', _uda_loss_usb_form)], ''),
    ],
    'mixmatch': [
        ('one lambda, same pairs', [], 'interleaved batches (project) vs none (USB mixmatch.py:92,110)'),
        ('aligned: no interleaving', [(maths, 'interleave', lambda xy, batch: list(xy))], ''),
    ],
    'vat': [
        ('same direction d', [], 'xi 1e-6: power step in float64 (project) vs float32 (USB)'),
        (
            f'aligned: xi {VAT_XI:g} on both sides',
            [(maths, 'vat_perturbation', lambda *a, **k: _vat_perturbation(*a, **k, xi=VAT_XI))],
            '',
        ),
    ],
}


def _split_threshold(confidences):
    """A threshold in the widest gap among the middle half of `confidences`: about half pass, none near it."""
    c = np.sort(np.asarray(confidences))
    lo, hi = len(c) // 4, 3 * len(c) // 4
    i = lo + int(np.argmax(np.diff(c[lo : hi + 1])))
    return float((c[i] + c[i + 1]) / 2)


FIXMATCH_FORWARD = ('fixmatch', 'flexmatch', 'freematch', 'softmatch', 'uda')  # one forward of [x; weak; strong]
# The project's flag for USB's p_cutoff, per algorithm that has one.
CONFIDENCE_FLAGS = dict.fromkeys(('fixmatch', 'flexmatch', 'uda'), '--confidence') | {'pseudolabel': '--threshold'}


def _weak_probabilities(name, model, x, views):
    """p(f(weak)) of every unlabelled row [u, K], from the forward the step runs (both sides)."""
    if name in FIXMATCH_FORWARD:
        logits = model(tf.concat([x, views[:, 0], views[:, 1]], 0), training=True, update_stats=False)
        weak = logits[len(x) : len(x) + len(views)]
    else:
        weak = model(views[:, 0], training=True, update_stats=False)
    return tf.nn.softmax(weak).numpy()


def _threshold(name, confidences):
    """USB's p_cutoff and the project's flag for it, chosen so that about half the unlabelled rows are kept."""
    flag = CONFIDENCE_FLAGS.get(name)
    if flag is None:
        return None, None
    value = _split_threshold(confidences)
    return value, f'{flag}={value!r}'


def _mid_run_state(name, probs, rng, size):
    """{project state name: numpy value}: a state as from the middle of a run, the same on both sides.

    Chosen so that the step's masks and weights split the rows (probs [u, K]: the weak view's):
    FlexMatch's selected labels mostly set, over unevenly learnt classes (thresholds from the split
    threshold down to near 0); FreeMatch's global threshold in the widest gap of the confidences,
    uneven class EMAs; SoftMatch's Gaussian centred on the median aligned confidence, an uneven
    alignment EMA.
    """
    uneven = lambda: rng.dirichlet(np.ones(NCLASS)).astype(np.float32)
    if name == 'flexmatch':
        labels = rng.choice(NCLASS, size, p=rng.dirichlet(np.full(NCLASS, 0.5)))
        return {'selected': np.where(rng.random(size) < 0.05, -1, labels).astype(np.int64)}
    if name == 'freematch':
        return {'tau': np.float32(_split_threshold(probs.max(1))), 'p': uneven(), 'hist': uneven()}
    if name == 'softmatch':
        pbar = uneven()
        updated = 0.999 * pbar + 0.001 * probs.mean(0)  # the step updates the EMA before aligning
        aligned = probs * (1 / NCLASS + 1e-6) / (updated + 1e-6)
        confidences = (aligned / aligned.sum(1, keepdims=True)).max(1)
        return {'pbar': pbar, 'mu': np.float32(np.median(confidences)), 'var': np.float32(np.var(confidences))}
    return {}


def project_step(cell, variant_patches, arrays):
    """The project's (loss, {torch name: gradient}, {hook/attribute: new state}) on the check's batch.

    Fills `arrays` for USB's side: the weights, the batch, the unlabelled rows' indices, the state.
    """
    algorithm = spec.ALGORITHMS[cell.algorithm]
    s = cell.schedule
    tf.random.set_seed(SEED)
    model = models.create_model('resnet', NCLASS, SHAPE, s.filters, s.repeat, s.scales, bn_momentum=s.bn_momentum)
    ema_model = models.create_model('resnet', NCLASS, SHAPE, s.filters, s.repeat, s.scales, bn_momentum=s.bn_momentum)
    for ema, v in zip(ema_model.variables, model.variables, strict=True):  # a teacher that is not the student
        ema.assign(v + 0.01 * tf.random.normal(v.shape) if v.trainable else v)
    rng = np.random.default_rng(SEED)
    u = s.batch * algorithm.uratio
    x = rng.uniform(-1, 1, (s.batch, *SHAPE)).astype(np.float32)
    y = rng.integers(0, NCLASS, s.batch)
    views = rng.uniform(-1, 1, (u, 2, *SHAPE)).astype(np.float32)
    probs = _weak_probabilities(cell.algorithm, model, x, views)
    threshold, threshold_flag = _threshold(cell.algorithm, probs.max(1))
    method_flags = s.project_flags(algorithm) + ([threshold_flag] if threshold_flag else [])
    algorithm_class, config = project_side.project_config(algorithm.method, ['--dataset=check.1@1-0'] + method_flags)
    images_seen = STEP * s.batch
    size = 2 * u  # the check's unlabelled file: the batch is half of it
    indices = rng.permutation(size)[:u]
    state = _mid_run_state(cell.algorithm, probs, rng, size)
    variables = algorithm_lib.state_variables({k: tf.constant(v) for k, v in state.items()})
    step = algorithm_lib.Step(
        model,
        ema_model,
        tf.constant([SEED, images_seen], tf.int64),
        tf.constant(images_seen / config.total_images, tf.float32),
        tf.constant(images_seen, tf.int64),
        config.total_images,
        variables,
    )
    instance = algorithm_class(config, NCLASS)
    nviews = len(instance.views)
    labels = tf.fill([u], tf.constant(-1, tf.int64))
    unlabelled = None if not nviews else (tf.constant(views[:, :nviews]), labels, tf.constant(indices, tf.int64))
    to_nchw = lambda a: np.ascontiguousarray(np.asarray(a).transpose(0, 3, 1, 2))
    arrays.update(
        it=STEP,
        scales=models.default_scales(SHAPE[0]) if not s.scales else s.scales,
        nclass=NCLASS,
        x_lb=to_nchw(x),
        y_lb=y,
        x_ulb_w=to_nchw(views[:, 0]),
        x_ulb_s=to_nchw(views[:, 1]),
        idx_ulb=indices,
        ulb_len=size,
    )
    names = {name: f'{hook}/{attribute}' for name, hook, attribute in algorithm.state}
    arrays.update({f'state/{names[k]}': v for k, v in state.items()})
    if threshold is not None:
        arrays['hyper/p_cutoff'] = np.float64(threshold)
    arrays.update({f'hyper/{name}': value for module, name, value in variant_patches if module is None})
    patches = [patch for patch in variant_patches if patch[0] is not None]
    if cell.algorithm == 'mixmatch':
        lam, perm = _mixup_draws(step, s.batch + 2 * u, float(config.hp.beta))
        arrays.update(lam=np.float64(lam), perm=perm)
        patches.append((maths, 'beta_lambda', lambda seed, n, beta: tf.fill([n], tf.constant(lam, tf.float32))))
    if cell.algorithm == 'vat':  # the draw maths.vat_perturbation makes from the step's seed
        arrays['vat_d'] = to_nchw(tf.random.stateless_normal(views[:, 0].shape, step.seed).numpy())
        if any(name == 'vat_perturbation' for _, name, _ in patches):
            arrays['vat_xi'] = np.float64(VAT_XI)
    arrays.update({f'w/{k}': v for k, v in weights.state_dict(model).items()})
    arrays.update({f'e/{k}': v for k, v in weights.state_dict(ema_model).items()})
    with contextlib.ExitStack() as stack:
        for module, name, value in patches:
            stack.enter_context(patched(module, name, value))
        with tf.GradientTape() as tape:
            loss, _ = instance.loss(step, (tf.constant(x), tf.constant(y, tf.int64)), unlabelled)
        grads = tape.gradient(loss, model.trainable_variables)
    new_state = {names[k]: v.numpy() for k, v in variables.items()}
    return float(loss), weights.gradients(model, model.trainable_variables, grads), new_state


def _mixup_draws(step, n, beta):
    """(lambda, pairing [n]) for both sides: one lambda in [0.5, 1] for every row (USB's form); the pairing the
    project's `maths.mixup` draws from the step's seed, read off by mixing row numbers with lambda 0."""
    lam = float(np.random.default_rng(SEED).beta(beta, beta))
    with patched(maths, 'beta_lambda', lambda seed, rows, b: tf.zeros([rows])):
        rows, _ = maths.mixup(tf.range(n, dtype=tf.float32)[:, None], tf.zeros([n, 1]), beta, step.seed)
    return max(lam, 1 - lam), np.round(rows.numpy()[:, 0]).astype(np.int64)


# ------------------------------------------------------------------ USB's side and the comparison


def usb_step(arrays, usb_python):
    """USB's (loss, {name: gradient}, {hook/attribute: new state}) for the check's arrays, computed in USB's venv."""
    with tempfile.TemporaryDirectory() as tmp:
        source, target = os.path.join(tmp, 'in.npz'), os.path.join(tmp, 'out.npz')
        np.savez(source, **arrays)
        proc = subprocess.run(
            [usb_python, '-m', 'scripts.parity.usb_step', source, target],
            cwd=ROOT,
            env=spec.usb_environment(),
            capture_output=True,
            text=True,
        )
        if proc.returncode:
            raise UserError(f"USB's step failed:\n{proc.stderr[-3000:]}")
        with np.load(target) as f:
            state = {k[len('state/') :]: f[k] for k in f.files if k.startswith('state/')}
            return float(f['loss']), {k[2:]: f[k] for k in f.files if k.startswith('g/')}, state


def check(name, usb_python=USB_PYTHON):
    """[{algorithm, variant, loss_project, loss_usb, dloss, dgrad, worst, grad_scale, dstate, verdict, why}].

    dgrad: the largest absolute gradient difference, found in parameter `worst`, whose own largest
    absolute gradient is `grad_scale`; dstate: the largest absolute difference of the state after the
    step (None for an algorithm without state).
    """
    cell = spec.Cell('usb', name, 'check', SEED, SCHEDULE)
    rows = []
    for variant, patches, why in VARIANTS[name]:
        arrays = {'cell': json.dumps(dataclasses.asdict(cell))}
        loss, grads, state = project_step(cell, patches, arrays)
        usb_loss, usb_grads, usb_state = usb_step(arrays, usb_python)
        assert set(grads) == set(usb_grads), set(grads) ^ set(usb_grads)
        assert set(state) == set(usb_state), set(state) ^ set(usb_state)
        dgrad = {k: float(np.max(np.abs(grads[k] - usb_grads[k]))) for k in grads}
        worst = max(dgrad, key=dgrad.get)
        scale = float(np.max(np.abs(grads[worst])))
        dstate = max((float(np.max(np.abs(state[k] - usb_state[k]))) for k in state), default=None)
        allowed = {k: max(TOLERANCE['grad'], TOLERANCE['grad_share'] * np.max(np.abs(g))) for k, g in grads.items()}
        equal = abs(loss - usb_loss) <= TOLERANCE['loss'] * max(1.0, abs(usb_loss))
        equal = equal and all(dgrad[k] <= allowed[k] for k in dgrad)
        equal = equal and (dstate is None or dstate <= TOLERANCE['state'])
        rows.append(
            dict(
                algorithm=name,
                variant=variant,
                loss_project=loss,
                loss_usb=usb_loss,
                dloss=abs(loss - usb_loss),
                dgrad=dgrad[worst],
                worst=worst,
                grad_scale=scale,
                dstate=dstate,
                verdict='equal' if equal else 'differs',
                why=why,
            )
        )
    return rows


HEADER = (
    '| algorithm | variant | loss (project) | loss (USB) | max abs dloss '
    "| max abs dgrad (where; that parameter's max abs grad) | max abs dstate | verdict |"
)


def print_table(rows):
    print(HEADER)
    print('|---|---|---|---|---|---|---|---|')
    for r in rows:
        dstate = '' if r['dstate'] is None else f'{r["dstate"]:.1e}'
        print(
            f'| {r["algorithm"]} | {r["variant"]} | {r["loss_project"]:.6f} | {r["loss_usb"]:.6f} | {r["dloss"]:.1e} '
            f'| {r["dgrad"]:.1e} ({r["worst"]}; {r["grad_scale"]:.1e}) | {dstate} '
            f'| {r["verdict"]}{": " + r["why"] if r["why"] else ""} |'
        )


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
    if not os.path.exists(FLAGS.usb_python):
        raise UserError(f'{FLAGS.usb_python} is missing: run `make parity-env` first')
    names = [n.strip() for n in FLAGS.algorithms.split(',') if n.strip()]
    unknown = [n for n in names if n not in spec.ALGORITHMS]
    if unknown:
        raise UserError(f'--algorithms: unknown {unknown}; expected some of {", ".join(spec.ALGORITHMS)}')
    rows = []
    for name in names:
        rows += check(name, FLAGS.usb_python)
        print(f'{name}: done', file=sys.stderr, flush=True)
    print_table(rows)
    if FLAGS.json:
        with open(FLAGS.json, 'w') as f:
            json.dump(rows, f, indent=1)


if __name__ == '__main__':
    app.run(cli_main(main))
