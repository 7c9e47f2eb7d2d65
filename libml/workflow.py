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

from libml.events import median_of_last, read_scalars
from libml.utils import UserError

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
        errors = [l for l in lines if l.startswith('error:')] or lines[-1:] or ['(no output)']
        raise UserError(f'step failed: python {command_line(args)}: {errors[-1].strip()}')
    return output


def ensure(path, args, log=None):
    """Runs `args` unless `path` already exists (data steps are reused across runs)."""
    if os.path.exists(path):
        print(f'(reusing {path})', flush=True)
        return
    run(args, log)


def train(script, flags, log=None, quiet=True):
    """Trains with `script` and `flags`; returns dict(run_dir, accuracy, last01, wall_s, command).

    `accuracy` is the median test accuracy of the last 10 reports (extract_accuracy's last10).
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
                command='python ' + command_line(args))


def markdown_table(header, rows):
    """A GitHub markdown table from a header list and rows of cells."""
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '|'.join('---' for _ in header) + '|']
    lines += ['| ' + ' | '.join(str(c) for c in row) + ' |' for row in rows]
    return '\n'.join(lines)
