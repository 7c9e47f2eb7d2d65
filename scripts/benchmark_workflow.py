#!/usr/bin/env python3
"""Times the data workflow at scale on a synthetic CIFAR-10-size archive.

Usage:
  scripts/benchmark_workflow.py [--images=5000] [--aug_copy=2] [--labels=250] [--resume_at=50000000]
      [--workdir=DIR] [--keep] [--json=FILE] [--overwrite]

Stages, each a real command in a child process (its peak memory is the child's own):
  archive          a cifar-10-matlab.tar.gz in the upstream layout (5 training batches, a test
                   batch of images/5, batches.meta.mat) of smooth noise-like 32x32x3 images
                   (built here, in this process);
  create_datasets  scripts/create_datasets.py cifar10 --archive_dir=...;
  create_split     scripts/create_split.py --seed=1 --label_split_size=<labels>;
  make_aug_copy    scripts/make_aug_copy.py --aug_copy=K --augment=cifar10;
  resume_*         DataSet.from_name('cifar10_aug<K>.1@<labels>-<valid>') and the delay until
                   train_unlabelled delivers its first batch at start=0, then in a new process (a
                   restart) at start=--resume_at (the first start writes the decoded-image cache of
                   libml/data/image_cache.py when 65,536 images or more are cached; the restart reads it);
  pipeline_*       img/s of RealMix's input (B labelled + two views of B unlabelled per step);
                   each of these stages twice: decoded images cached in memory (the default
                   --cache_mb) and streamed from the file (--cache_mb=0).
Prints one line per stage: images, seconds, img/s, peak resident memory (MB). The defaults
take a few minutes on 2 CPU cores; the full size is --images=50000 --aug_copy=50.
Everything is written under --workdir (default: a temporary folder, removed at the end
unless --keep).
"""

import io
import json
import os
import resource
import shutil
import sys
import tarfile
import tempfile
import time

from libml import signals
from libml.data.synthetic import synthetic_images
from libml.errors import UserError, cli_main
from libml.files import check_writable, write_json

import numpy as np
import scipy.io
from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_integer('images', 5000, 'Training images of the synthetic CIFAR-10 (the test set has a fifth as many).')
flags.DEFINE_integer('aug_copy', 2, 'Augmented copies made by make_aug_copy.py (--aug_copy).')
flags.DEFINE_integer('labels', 250, 'Labelled images of the split (--label_split_size); at most a quarter of --images.')
flags.DEFINE_integer('resume_at', 50_000_000, 'Late stream position (images already drawn) of the resume stage.')
flags.DEFINE_integer('batch', 64, 'Batch size of the resume stage.')
flags.DEFINE_integer('workers', 0, 'make_aug_copy.py --workers (0: one per CPU core).')
flags.DEFINE_string('workdir', None, 'Folder for the archive and $ML_DATA (default: a temporary folder).')
flags.DEFINE_bool('keep', False, 'Keep the temporary --workdir.')
flags.DEFINE_string('json', None, 'Also write the figures to this JSON file.')
flags.DEFINE_bool('overwrite', False, 'Replace an existing --json file.')
flags.DEFINE_integer(
    'pipeline_steps', 20, 'Steps of RealMix input (B labelled + 2B unlabelled) timed per pipeline stage.'
)
flags.DEFINE_string('probe', None, 'Internal: run the resume stage on this dataset and print its timings as JSON.')
flags.DEFINE_integer('probe_cache_mb', -1, 'Internal: --cache_mb of the probe (-1: the default, 0: streamed).')
flags.DEFINE_integer('probe_start', 0, "Internal: stream position of the probe's first batch.")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAMES = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck']


# --------------------------------------------------------------------------- the archive


def matlab_batch(images, labels, title):
    """One CIFAR MATLAB batch file: data uint8 [N, 3072] (R, G, B planes, row-major), labels [N, 1]."""
    buffer = io.BytesIO()
    rows = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
    scipy.io.savemat(buffer, {'data': rows, 'labels': labels.astype(np.uint8)[:, None], 'batch_label': title})
    return buffer.getvalue()


def write_archive(directory, images, seed=0):
    """cifar-10-matlab.tar.gz with `images` training images (labels balanced, shuffled) and images // 5 test.

    Returns the archive's path.
    """
    rng = np.random.default_rng(seed)
    names = np.empty((len(NAMES), 1), dtype=object)
    names[:, 0] = NAMES
    meta = io.BytesIO()
    scipy.io.savemat(meta, {'label_names': names})
    members = {'batches.meta.mat': meta.getvalue()}
    labels = rng.permutation(np.arange(images) % len(NAMES))
    bounds = np.linspace(0, images, 6).astype(int)
    for b in range(5):
        count = bounds[b + 1] - bounds[b]
        members[f'data_batch_{b + 1}.mat'] = matlab_batch(
            synthetic_images(rng, count), labels[bounds[b] : bounds[b + 1]], f'training batch {b + 1} of 5'
        )
    test = max(len(NAMES), images // 5)
    members['test_batch.mat'] = matlab_batch(
        synthetic_images(rng, test), rng.permutation(np.arange(test) % len(NAMES)), 'testing batch 1 of 1'
    )
    path = os.path.join(directory, 'cifar-10-matlab.tar.gz')
    with tarfile.open(path, 'w:gz', compresslevel=1) as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(f'cifar-10-batches-mat/{name}')
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return path


# --------------------------------------------------------------------------- children


# Runs a command as its own child and writes that child's peak RSS (KiB) to argv[1]. A child of
# this (TensorFlow-sized) process would report this process's size as its own peak: Linux
# counts the parent's pages at fork time, so the measured command is forked from this small one.
_PEAK_RSS = """import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], 'w') as f:
    f.write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_child(args, env):
    """Runs `python args...` from the repository root; returns (seconds, peak RSS in MB, stdout).

    UserError with the child's last error line when it fails.
    """
    with tempfile.TemporaryDirectory() as scratch:
        out, err, peak = (os.path.join(scratch, name) for name in ('out', 'err', 'peak'))
        command = [sys.executable, '-c', _PEAK_RSS, peak, sys.executable] + [str(a) for a in args]
        with open(out, 'w') as stdout, open(err, 'w') as stderr:
            start = time.perf_counter()
            with signals.child(command, cwd=ROOT, env=env, stdout=stdout, stderr=stderr) as proc:
                code = proc.wait()
            seconds = time.perf_counter() - start
        with open(out) as f:
            output = f.read()
        with open(err, errors='replace') as f:
            lines = [line for line in f.read().replace('\r', '\n').splitlines() if line.strip()]
        if code:
            raise UserError(f'{args[0]} failed (exit {code}): {lines[-1] if lines else "no message"}')
        with open(peak) as f:
            return seconds, int(f.read()) / 1024, output  # ru_maxrss is in KiB on Linux


def first_batch_delay(dataset, batch, start):
    """Seconds until dataset.train_unlabelled(...) delivers its first batch at stream position `start`.

    The one call into libml.data.dataset's pipeline API (adapt here if its signature changes).
    """
    began = time.perf_counter()
    images = next(iter(dataset.train_unlabelled(batch, ('weak', 'weak'), seed=1, start=start)))[0]
    assert images.shape[0] == batch
    return time.perf_counter() - began


def pipeline_rate(dataset, batch, steps):
    """img/s of RealMix's input streams at start 0: `steps` x (batch labelled + 2 x batch unlabelled)."""
    labelled = iter(dataset.train_labelled(batch, seed=1))
    unlabelled = iter(dataset.train_unlabelled(batch, ('weak', 'weak'), seed=1))
    next(labelled), next(unlabelled)  # the first batches' delay is timed by first_batch_delay
    began = time.perf_counter()
    for _ in range(steps):
        next(labelled), next(unlabelled)
    return 3 * batch * steps / (time.perf_counter() - began)


def probe(name):
    """A resume stage, run in a child: builds the DataSet, times its first batch at --probe_start.

    At --probe_start=0 (a first start), also the input rate.
    """
    from libml.data.dataset import DataSet

    kwargs = {} if FLAGS.probe_cache_mb < 0 else {'cache_mb': FLAGS.probe_cache_mb}
    began = time.perf_counter()
    dataset = DataSet.from_name(name, augment='cifar10', **kwargs)
    opened = time.perf_counter() - began
    result = {'open': opened, 'unlabelled': int(dataset.unlabel_count), 'cached': bool(dataset.cached[1])}
    result['first'] = first_batch_delay(dataset, FLAGS.batch, FLAGS.probe_start)
    if not FLAGS.probe_start:
        result['rate'] = pipeline_rate(dataset, FLAGS.batch, FLAGS.pipeline_steps)
    print(json.dumps(result))


# --------------------------------------------------------------------------- main


def report(rows, stage, images, seconds, peak_mb, note=''):
    """Prints one stage's line (img/s = images / seconds) and appends it to `rows`."""
    rows.append({'stage': stage, 'images': images, 'seconds': seconds, 'peak_mb': peak_mb, 'note': note})
    rate = f'{images / seconds:9.0f}' if images and seconds > 0 and not stage.startswith('resume') else ' ' * 9
    peak = f'{peak_mb:8.0f}' if peak_mb else ' ' * 8
    print(f'{stage:21s} {images:10d} {seconds:9.1f} {rate} {peak}  {note}', flush=True)


def main(argv):
    if len(argv) > 1:
        raise UserError(f'unexpected arguments {" ".join(argv[1:])}: everything is given by flags')
    if FLAGS.probe:
        return probe(FLAGS.probe)
    if FLAGS.images < 40:
        raise UserError(f'--images={FLAGS.images}: use at least 40')
    if FLAGS.aug_copy < 1:
        raise UserError(f'--aug_copy={FLAGS.aug_copy}: must be at least 1')
    labels = min(FLAGS.labels, FLAGS.images // 4 // 10 * 10)
    if labels < 10:
        raise UserError(f'--labels={FLAGS.labels}: must be at least 10 (one per class)')
    if FLAGS.json:
        check_writable(FLAGS.json, FLAGS.overwrite)
    workdir = FLAGS.workdir or tempfile.mkdtemp(prefix='benchmark_workflow.')
    os.makedirs(workdir, exist_ok=True)
    archives, ml_data = os.path.join(workdir, 'archives'), os.path.join(workdir, 'ml_data')
    for folder in (archives, ml_data):
        if os.path.exists(folder) and os.listdir(folder):
            raise UserError(f'{folder} is not empty: give an empty or new --workdir')
        os.makedirs(folder, exist_ok=True)
    env = dict(os.environ, ML_DATA=ml_data, CUDA_VISIBLE_DEVICES='', TF_CPP_MIN_LOG_LEVEL='3')
    test = max(10, FLAGS.images // 5)
    unlabel = FLAGS.images - labels
    records = unlabel + FLAGS.aug_copy * unlabel  # benchmark split: every record augmented, all held out in front
    rows = []
    print(
        f'{FLAGS.images} training images, split @{labels}, aug_copy={FLAGS.aug_copy}, in {workdir}; '
        f'{os.cpu_count()} CPU cores'
    )
    print(f'{"stage":21s} {"images":>10s} {"seconds":>9s} {"img/s":>9s} {"peak MB":>8s}')
    try:
        began = time.perf_counter()
        write_archive(archives, FLAGS.images)
        report(
            rows,
            'archive',
            FLAGS.images + test,
            time.perf_counter() - began,
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            'this process',
        )
        seconds, peak, _ = run_child(['scripts/create_datasets.py', 'cifar10', f'--archive_dir={archives}'], env)
        report(rows, 'create_datasets', FLAGS.images + test, seconds, peak, f'{FLAGS.images} train + {test} test')
        prefix = os.path.join(ml_data, 'SSL', 'cifar10')
        train = os.path.join(ml_data, 'cifar10-train.tfrecord')
        seconds, peak, _ = run_child(
            ['scripts/create_split.py', '--seed=1', f'--label_split_size={labels}', prefix, train], env
        )
        report(rows, 'create_split', FLAGS.images, seconds, peak, f'{labels} labelled + {unlabel} unlabelled')
        seconds, peak, _ = run_child(
            [
                'scripts/make_aug_copy.py',
                f'--aug_dataset=cifar10.1@{labels}',
                f'--aug_copy={FLAGS.aug_copy}',
                '--augment=cifar10',
                f'--workers={FLAGS.workers}',
            ],
            env,
        )
        report(
            rows,
            'make_aug_copy',
            records,
            seconds,
            peak,
            f'{unlabel} clean + {FLAGS.aug_copy} x {unlabel} augmented records',
        )
        name = f'cifar10_aug{FLAGS.aug_copy}.1@{labels}-{min(500, unlabel)}'
        for kind, cache_mb in (('cached', -1), ('streamed', 0)):
            probed = {}
            for start in (0, FLAGS.resume_at):  # a start, then a restart (resume) in a new process
                command = [__file__, f'--probe={name}', f'--probe_cache_mb={cache_mb}', f'--probe_start={start}']
                command += [f'--batch={FLAGS.batch}', f'--pipeline_steps={FLAGS.pipeline_steps}']
                seconds, peak, out = run_child(command, env)
                probed[start] = json.loads(out.strip().splitlines()[-1]), seconds, peak
            (first, seconds, peak), (late, late_seconds, late_peak) = probed[0], probed[FLAGS.resume_at]
            where = 'in memory' if first['cached'] else 'streamed from the file'
            report(
                rows,
                f'resume_open_{kind}',
                first['unlabelled'],
                first['open'],
                peak,
                f'DataSet.from_name({name!r}), unlabelled images {where}; the child ran {seconds:.1f} s in all',
            )
            report(rows, f'resume_0_{kind}', FLAGS.batch, first['first'], peak, 'first batch at start=0 (delay)')
            report(
                rows,
                f'resume_late_{kind}',
                FLAGS.batch,
                late['first'],
                late_peak,
                f'first batch at start={FLAGS.resume_at:,} (delay) in a new process, after a '
                f'{late["open"]:.1f} s DataSet.from_name; the child ran {late_seconds:.1f} s in all',
            )
            steps = FLAGS.pipeline_steps
            report(
                rows,
                f'pipeline_{kind}',
                3 * FLAGS.batch * steps,
                3 * FLAGS.batch * steps / first['rate'],
                peak,
                f'{steps} steps of {FLAGS.batch} labelled + 2 x {FLAGS.batch} unlabelled (RealMix)',
            )
    finally:
        if not FLAGS.workdir and not FLAGS.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    if FLAGS.json:
        figures = {'images': FLAGS.images, 'aug_copy': FLAGS.aug_copy, 'labels': labels, 'stages': rows}
        write_json(FLAGS.json, figures, overwrite=FLAGS.overwrite)
    return None


if __name__ == '__main__':
    app.run(cli_main(main))
