"""Running the project's own commands from Python: the demo and the reproduction tables use it.

Each step is the exact command line a user would type (printed before it runs, and appended
to a log), so every number these scripts report can be reproduced by hand. A training step's
run dir is computed from its command line in-process (`cli.parse`), and its outcome read from
the run's machine-readable files (run.json, the TensorBoard events), never from its console.
"""

import inspect
import os
import shlex
import subprocess
import sys
import time

from libml import algorithm, cli, config, signals
from libml.data.names import data_dir
from libml.errors import UserError
from libml.report.evaluation import OUTLIER_SETS
from libml.report.events import read_scalars, training_cpu_seconds, training_seconds
from libml.report.metrics import median_of_last
from libml.report.reporter import OUTLIER_PREFIX
from libml.train import run_folder

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# The paper's recipe scaled from WRN-28-2 and 1<<16 kimg on a GPU to a WRN of width 16 and
# 96 kimg (the demo) or 48-64 kimg (the digits tables' cells), minutes on 2 CPU cores.
_DIGITS = ['--filters=16', '--repeat=2', '--ema=0.99', '--bn_momentum=0.99', '--augment=svhn']
DEMO_SCHEDULE = _DIGITS + ['--train_kimg=96', '--report_kimg=4', '--save_kimg=32']
TABLE_SCHEDULE = _DIGITS + ['--report_kimg=2', '--save_kimg=16']  # + --train_kimg (reproduce.py's flag)
# Seconds per run: checks that every step works, not the accuracies.
QUICK_SCHEDULE = [
    '--filters=8',
    '--repeat=1',
    '--batch=16',
    '--train_kimg=1',
    '--report_kimg=1',
    '--save_kimg=1',
    '--augment=svhn',
]
AUG_COPIES = 8


def command_line(args):
    """The shell form of a command, as shown to the user."""
    return ' '.join(shlex.quote(str(a)) for a in args)


def run(args, log=None, quiet=False):
    """Runs `python <args>` from the repository root; returns its output.

    The command is printed first; its output streams to the terminal unless `quiet`, and is
    appended to `log` when given. A failure raises UserError with the command's last error line.
    Stopping this process (Ctrl-C, kill) stops the command with the same signal (`signals.child`).
    """
    print(f'$ python {command_line(args)}', flush=True)
    command = [sys.executable] + [str(a) for a in args]
    lines = []
    with signals.child(command, cwd=ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as proc:
        for line in proc.stdout:
            lines.append(line)
            if not quiet:
                sys.stdout.write(line)
                sys.stdout.flush()
        proc.wait()
    if log:
        with open(log, 'a') as f:
            f.write(f'$ python {command_line(args)}\n{"".join(lines)}\n')
    if proc.returncode != 0:
        errors = [x for x in lines if x.startswith('error:')] or [x for x in lines if x.strip()] or ['(no output)']
        raise UserError(f'step failed: python {command_line(args)}: {errors[-1].strip()}')
    return ''.join(lines)


def ensure(path, args, log=None):
    """Runs `args` unless `path` already exists (data steps are reused across runs)."""
    if os.path.exists(path):
        print(f'(reusing {path})', flush=True)
        return
    run(args, log)


def algorithm_of(method):
    """The `Algorithm` class behind a method's label (the registry: `libml.algorithm.registered`)."""
    return algorithm.method(method).algorithm


def script_of(method):
    """The file that runs a method's algorithm, relative to the repository root ('realmix.py')."""
    return os.path.relpath(inspect.getfile(algorithm_of(method)), ROOT)


def merged_flags(defaults, flags):
    """`defaults` but those `flags` sets again, then `flags` (a table cell's --w_match over its method's)."""
    names = {flag.split('=')[0] for flag in flags}
    return [flag for flag in defaults if flag.split('=')[0] not in names] + list(flags)


def run_dir_of(method, flags):
    """The run folder a method trains into with `flags`, computed from the command line."""
    found = algorithm.method(method)
    return config.run_dir(cli.parse(found.algorithm, merged_flags(found.flags(), flags)), found.algorithm)


def train(method, flags, log=None, quiet=True):
    """Trains `method` with `flags` unless its run is complete; returns its outcome.

    Returns dict(run_dir, accuracy (median test accuracy of the last 10 reports), aurocs ({set: median
    outlier AUROC of the last 10 reports} of the sets the run reports), last01, curve [(images,
    accuracy)], mask (mean of `monitors/mask` over the last 10 reports: the share or mean weight of
    the unlabelled rows trained on; None for methods that do not log it), wall_s (this call), train_s
    (from the events: each session's first to last event, so it stays right for resumed runs), cpu_s
    (from the events, summed over sessions likewise; None for runs with sessions that did not record
    it), command).
    """
    args = [script_of(method)] + merged_flags(algorithm.method(method).flags(), flags)
    settings = cli.parse(algorithm_of(method), args[1:])
    run_dir = config.run_dir(settings, algorithm_of(method))
    start = time.time()
    _refuse_another_length(run_dir, settings.train_kimg)
    if _finished(run_dir, settings.total_images):
        print(f'(already trained: {run_dir})', flush=True)
    else:
        run(args, log, quiet=quiet)
    curve = read_scalars(run_folder.ckpt_dir(run_dir), 'accuracy_test')
    if not curve:
        raise UserError(f'{run_dir} has no accuracy_test reports')
    stats = median_of_last([v for _, v in curve])
    mask = [v for _, v in read_scalars(run_folder.ckpt_dir(run_dir), 'monitors/mask')][-10:]
    aurocs = {name: read_scalars(run_folder.ckpt_dir(run_dir), OUTLIER_PREFIX + name) for name in OUTLIER_SETS}
    return dict(
        run_dir=run_dir,
        accuracy=stats['last10'],
        aurocs={name: median_of_last([v for _, v in found])['last10'] for name, found in aurocs.items() if found},
        last01=stats['last01'],
        curve=curve,
        mask=sum(mask) / len(mask) if mask else None,
        wall_s=time.time() - start,
        train_s=training_seconds(run_folder.ckpt_dir(run_dir)),
        cpu_s=training_cpu_seconds(run_folder.ckpt_dir(run_dir)),
        command='python ' + command_line(args),
    )


def _refuse_another_length(run_dir, train_kimg):
    """UserError if `run_dir` holds checkpoints of a run of another --train_kimg.

    Resuming it would splice two schedules (learning-rate decay, warm-up ramps and TSA follow the
    run's length) and ending early would report the longer run's curve: neither is a table cell.
    """
    trained = run_folder.trained_length(run_dir)
    if trained not in (None, train_kimg):
        raise UserError(
            f'{run_dir} holds a run of --train_kimg={trained}, this one asks for {train_kimg}: '
            'move or delete that folder to train this length from the start'
        )


def _finished(run_dir, total_images):
    path = os.path.join(run_dir, 'run.json')
    if not os.path.exists(path):
        return False
    status = run_folder.read_status(run_dir)
    return status.get('status') == 'done' and status.get('images', 0) >= total_images


def train_method(method, dataset, train_dir, seed, schedule, log=None, quiet=True):
    """Trains `method` (a method's label) on `dataset` with `schedule` (flags); see `train`."""
    print(f'\n== {method} on {dataset} ==', flush=True)
    result = train(
        method, [f'--dataset={dataset}', f'--train_dir={train_dir}', f'--seed={seed}'] + schedule, log, quiet=quiet
    )
    print(f'   test accuracy {result["accuracy"]:.1f}% ({result["train_s"] / 60:.1f} min of training)', flush=True)
    return result


def ssl_path(*parts):
    return os.path.join(data_dir(), 'SSL', *parts)


def ensure_split(name, seed, size, log=None, builder=None):
    """`<name>` (built by `scripts/create_datasets.py <builder or name>`) and its split `<name>.<seed>@<size>`."""
    train_file = os.path.join(data_dir(), f'{name}-train.tfrecord')
    ensure(train_file, ['scripts/create_datasets.py', builder or name], log)
    ensure(
        ssl_path(f'{name}.{seed}@{size}-label.tfrecord'),
        ['scripts/create_split.py', f'--seed={seed}', f'--label_split_size={size}', ssl_path(name), train_file],
        log,
    )


def make_digits_split(seed, size, log=None):
    """digits and the split digits.<seed>@<size> under $ML_DATA, each built once."""
    ensure_split('digits', seed, size, log)


def make_aug_copy(name, seed, size, valid, log=None, copies=AUG_COPIES, augment='svhn'):
    """`<name>_aug<copies>.<seed>@<size>` with `valid` clean validation images in front; returns its name."""
    ensure(
        ssl_path(f'{name}_aug{copies}.{seed}@{size}-unlabel.tfrecord'),
        [
            'scripts/make_aug_copy.py',
            f'--aug_dataset={name}.{seed}@{size}',
            f'--aug_copy={copies}',
            f'--augment={augment}',
            f'--valid_size={valid}',
        ],
        log,
    )
    return f'{name}_aug{copies}'
