"""Running the project's own commands from Python: the demo and the reproduction tables use it.

Each step is the exact command line a user would type (printed before it runs), so every
number these scripts report can be reproduced by hand.
"""

import os
import re
import shlex
import subprocess
import sys
import time

from libml.events import median_of_last, read_scalars, training_seconds
from libml.utils import UserError, data_dir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def command_line(args):
    """The shell form of a command, as shown to the user."""
    return ' '.join(shlex.quote(str(a)) for a in args)


def run(args, log=None, quiet=False):
    """Runs `python <args>` from the repository root; returns its stdout.

    The command is printed first; its output streams to the terminal unless `quiet`, and is
    appended to `log` when given. A failure raises UserError with the command's last error line.
    """
    print(f'$ python {command_line(args)}', flush=True)
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''))
    proc = subprocess.Popen([sys.executable] + [str(a) for a in args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if not quiet and not line.startswith(('I0000', 'WARNING: All log messages')):
            sys.stdout.write(line)
            sys.stdout.flush()
    proc.wait()
    output = ''.join(lines)
    if log:
        with open(log, 'a') as f:
            f.write(f'$ python {command_line(args)}\n{output}\n')
    if proc.returncode != 0:
        errors = [l for l in lines if l.startswith('error:')] or [l for l in lines if l.strip()] or ['(no output)']
        raise UserError(f'step failed: python {command_line(args)}: {errors[-1].strip()}')
    return output


def ensure(path, args, log=None):
    """Runs `args` unless `path` already exists (data steps are reused across runs)."""
    if os.path.exists(path):
        print(f'(reusing {path})', flush=True)
        return
    run(args, log)


def train(script, flags, log=None, quiet=True):
    """Trains with `script` and `flags`; returns dict(run_dir, accuracy, last01, wall_s, train_s, command).

    `accuracy` is the median test accuracy of the last 10 reports (extract_accuracy's last10);
    `wall_s` times this call; `train_s` is read from the run's events files (each session's
    first to last event), so it stays right when the run was already trained or resumed.
    """
    start = time.time()
    args = [script] + list(flags)
    output = run(args, log, quiet=quiet)
    wall = time.time() - start
    match = re.search(r'^Run dir: (.+)$', output, re.M) or re.search(r'^(\S+): already trained', output, re.M)
    if not match:
        raise UserError(f'could not find the run dir in the output of {script}')
    run_dir = match.group(1).strip()
    run(['scripts/extract_accuracy.py', run_dir], log, quiet=True)
    values = [v for _, v in read_scalars(os.path.join(run_dir, 'tf'), 'accuracy_test')]
    stats = median_of_last(values)
    return dict(run_dir=run_dir, accuracy=stats['last10'], last01=stats['last01'], wall_s=wall,
                train_s=training_seconds(os.path.join(run_dir, 'tf')), command='python ' + command_line(args))


def markdown_table(header, rows):
    """A GitHub markdown table from a header list and rows of cells."""
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '|'.join('---' for _ in header) + '|']
    lines += ['| ' + ' | '.join(str(c) for c in row) + ' |' for row in rows]
    return '\n'.join(lines)


# ----------------------------------------------------------------------------- digits recipes
# The paper's recipe scaled from WRN-28-2 and 1<<16 kimg on a GPU to a WRN of width 16 and
# 96 kimg (the demo) or 48-64 kimg (each of the reproduction tables' 34 cells), minutes on 2 CPU cores.
_DIGITS = ['--filters=16', '--repeat=2', '--ema=0.99', '--bn_momentum=0.99', '--augment=svhn']
DEMO_SCHEDULE = _DIGITS + ['--train_kimg=96', '--report_kimg=4', '--save_kimg=32']
TABLE_SCHEDULE = _DIGITS + ['--report_kimg=2', '--save_kimg=16']  # + --train_kimg (reproduce.py's flag)
# Seconds per run: checks that every step works, not the accuracies.
QUICK_SCHEDULE = ['--filters=8', '--repeat=1', '--batch=16', '--train_kimg=1', '--report_kimg=1', '--save_kimg=1',
                  '--augment=svhn']
_SSL = ['--warmup_kimg=32', '--w_match=75', '--beta=0.75']
METHODS = {
    'Supervised': ('fully_supervised/fs_baseline.py', ['--smoothing=0.001']),
    'MixUp': ('fully_supervised/fs_mixup.py', ['--beta=0.5']),
    'MixMatch': ('realmix.py', _SSL + ['--tsa=none', '--percent_mask=-1']),
    'RealMix': ('realmix.py', _SSL + ['--tsa=linear_schedule', '--percent_mask=0.25']),
}
AUG_COPIES = 8


def ssl_path(*parts):
    return os.path.join(data_dir(), 'SSL', *parts)


def make_digits_split(seed, size, log=None):
    """digits and the split digits.<seed>@<size> under $ML_DATA, each built once."""
    train = os.path.join(data_dir(), 'digits-train.tfrecord')
    ensure(train, ['scripts/create_datasets.py', 'digits'], log)
    ensure(ssl_path(f'digits.{seed}@{size}-label.tfrecord'),
           ['scripts/create_split.py', f'--seed={seed}', f'--label_split_size={size}', ssl_path('digits'), train], log)


def make_aug_copy(name, seed, size, valid, log=None):
    """`<name>_aug8.<seed>@<size>` with `valid` clean validation images in front; returns its name."""
    ensure(ssl_path(f'{name}_aug{AUG_COPIES}.{seed}@{size}-unlabel.tfrecord'),
           ['scripts/make_aug_copy.py', f'--aug_dataset={name}.{seed}@{size}', f'--aug_copy={AUG_COPIES}',
            '--augment=svhn', f'--valid_size={valid}'], log)
    return f'{name}_aug{AUG_COPIES}'


def train_method(method, dataset, train_dir, seed, schedule, log=None, quiet=True):
    """Trains `method` (a METHODS key) on `dataset` with `schedule` (flags); see `train`."""
    script, extra = METHODS[method]
    print(f'\n== {method} on {dataset} ==', flush=True)
    result = train(script, [f'--dataset={dataset}', f'--train_dir={train_dir}', f'--seed={seed}'] + schedule + extra,
                   log, quiet=quiet)
    print(f'   test accuracy {result["accuracy"]:.1f}% in {result["wall_s"] / 60:.1f} min', flush=True)
    return result
