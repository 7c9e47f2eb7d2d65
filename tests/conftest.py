"""Shared fixtures: an isolated $ML_DATA per test, the digits data, and one trained tiny run."""

import contextlib
import glob
import os
import shutil
import signal
import subprocess
import sys
import time

from libml.data.records import decode_png, read_records

import numpy as np
import pytest
import tensorflow as tf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def tiny(ml_data):
    """A 10-class split tiny.1@50 of 200 train images (+20 unlabelled) and 40 test images."""
    from test_data_dataset import build_dataset  # the dataset tests' builder, shared with the streams' and cache's

    return build_dataset(str(ml_data), n_train=220, n_unlabelled=20)


@pytest.fixture(autouse=True)
def no_global_seed():
    """make_aug_copy runs in a fresh process; tf.data's seeded shuffle also depends on the global seed,
    which earlier tests in this process may have set (the splits, augmented-copy, filtering and
    encoder tests compare with in-process references)."""
    tf.random.set_seed(None)


@pytest.fixture
def ml_data(tmp_path, monkeypatch):
    """A fresh, empty $ML_DATA directory for one test."""
    root = tmp_path / 'ml_data'
    root.mkdir()
    monkeypatch.setenv('ML_DATA', str(root))
    return root


def run_cli(args, ml_data=None, check=True, timeout=600, cwd=ROOT):
    """Runs a repository command line (`['scripts/x.py', '--flag']`) in a subprocess.

    Returns the CompletedProcess (text output). With `check`, a non-zero exit fails the test
    and shows the output.
    """
    env = dict(os.environ, CUDA_VISIBLE_DEVICES='')
    env.pop('PYTHONPATH', None)
    if ml_data is not None:
        env['ML_DATA'] = str(ml_data)
    proc = subprocess.run(
        [sys.executable] + [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise AssertionError(f'{args} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}')
    return proc


@pytest.fixture(scope='session')
def digits_source(tmp_path_factory):
    """A read-only $ML_DATA built by the real commands: digits and the split digits.1@50."""
    root = tmp_path_factory.mktemp('digits_ml_data')
    run_cli(['scripts/create_datasets.py', 'digits'], ml_data=root)
    run_cli(
        [
            'scripts/create_split.py',
            '--seed=1',
            '--label_split_size=50',
            root / 'SSL' / 'digits',
            root / 'digits-train.tfrecord',
        ],
        ml_data=root,
    )
    return root


@pytest.fixture
def digits(digits_source, tmp_path, monkeypatch):
    """A private, writable copy of `digits_source`, exported as $ML_DATA."""
    import shutil

    root = tmp_path / 'ml_data'
    shutil.copytree(digits_source, root)
    monkeypatch.setenv('ML_DATA', str(root))
    return root


# Flags for a training run that takes seconds: a tiny WRN, 16-image batches, 1 kimg reports.
TINY_TRAIN = [
    '--filters=8',
    '--repeat=1',
    '--batch=16',
    '--report_kimg=1',
    '--save_kimg=1',
    '--augment=svhn',
    '--eval_batch=512',
]


@pytest.fixture(scope='session')
def trained(digits_source, tmp_path_factory):
    """One tiny RealMix run of 2 kimg shared by the tests that only read it: (train_dir, run_dir, stdout)."""

    train_dir = tmp_path_factory.mktemp('trained') / 'exp'
    out = run_cli(
        ['realmix.py', '--dataset=digits.1@50-250', f'--train_dir={train_dir}', '--train_kimg=2'] + TINY_TRAIN,
        ml_data=digits_source,
    ).stdout
    [run_dir] = glob.glob(os.path.join(train_dir, 'digits.1@50-250', '*'))
    return train_dir, run_dir, out


def deterministic_env(ml_data):
    """Environment of a training subprocess whose runs repeat bit for bit (CPU, deterministic ops, the venv first)."""
    env = dict(os.environ, ML_DATA=str(ml_data), CUDA_VISIBLE_DEVICES='', TF_DETERMINISTIC_OPS='1')
    env['PATH'] = os.path.dirname(sys.executable) + os.pathsep + env['PATH']  # `#!/usr/bin/env python3` finds the venv
    return env


def kill_and_resume(command, train_dir, env, images=1024):
    """Runs `command --train_dir=...`, SIGKILLs it once its checkpoint at `images` exists, then runs it to the end.

    Asserts the kill came before the next checkpoint and that the second run resumed. Returns the
    prefix of the resumed run's last checkpoint at 2 * `images`.
    """
    args = command + [f'--train_dir={train_dir}']
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pattern = os.path.join(str(train_dir), '*', '*', 'tf', f'model.ckpt-{images:010d}.index')
    deadline = time.time() + 300
    while not glob.glob(pattern) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    following = pattern.replace(f'{images:010d}', f'{2 * images:010d}')
    assert glob.glob(pattern) and not glob.glob(following)
    out = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True)
    assert out.returncode == 0 and 'Resuming from' in out.stdout, out.stderr
    [resumed] = glob.glob(following)
    return resumed[: -len('.index')]


def assert_same_checkpoints(a, b, scopes=('model/', 'ema_model/', 'optimizer/')):
    """The variables under `scopes` of checkpoints `a` and `b` agree (rtol 1e-4); returns the keys compared."""
    first, second = tf.train.load_checkpoint(a), tf.train.load_checkpoint(b)
    keys = [k for k in first.get_variable_to_shape_map() if k.startswith(scopes)]
    for key in keys:
        np.testing.assert_allclose(first.get_tensor(key), second.get_tensor(key), rtol=1e-4, atol=1e-6, err_msg=key)
    return keys


def read(path):
    """(uint8 images [N, H, W, C], labels [N]) of a TFRecord file."""
    records = [(decode_png(png), label) for png, label in read_records(str(path))]
    return np.stack([r[0] for r in records]), np.array([r[1] for r in records])


def assert_user_error(proc, *fragments):
    """Exit code 1, exactly one `error:` line holding every fragment, no traceback."""
    errors = [line for line in proc.stderr.splitlines() if line.startswith('error:')]
    assert proc.returncode == 1, proc.stderr
    assert len(errors) == 1, proc.stderr
    assert 'Traceback' not in proc.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


@contextlib.contextmanager
def tmpfs(path, options):
    """A fresh tmpfs mounted at `path` with mount `options` (e.g. 'size=32k'); skips the test unless root."""
    path.mkdir(parents=True, exist_ok=True)
    mount = ['mount', '-t', 'tmpfs', '-o', options, 'tmpfs', str(path)]
    if os.geteuid() != 0 or subprocess.run(mount, capture_output=True).returncode:
        pytest.skip('mounting a tmpfs needs root')
    try:
        yield path
    finally:
        subprocess.run(['umount', '-l', str(path)], capture_output=True)


# digits6.1@50-0: labelled and test digits 2-7 (renumbered 0-5), unlabelled 0,1,6,7 (50% mismatch), unseen 0,1,8,9.
MISMATCH_INLIERS, MISMATCH_UNLABELLED, MISMATCH_OTHERS = '2,3,4,5,6,7', '0,1,6,7', '0,1,8,9'
MISMATCH_DATASET = 'digits6.1@50-0'


@pytest.fixture(scope='session')
def digits_mismatch(digits_source, tmp_path_factory):
    """$ML_DATA with digits6: labelled and test classes 2-7 (renumbered 0-5), unlabelled 0,1,6,7, unseen 0,1,8,9."""
    root = tmp_path_factory.mktemp('mismatch_ml_data')
    shutil.copytree(digits_source, root, dirs_exist_ok=True)
    order = f'--label_order={MISMATCH_INLIERS}'
    for part, keep in (('label', MISMATCH_INLIERS), ('unlabel', MISMATCH_UNLABELLED)):
        source, target = root / 'SSL' / f'digits.1@50-{part}.tfrecord', root / 'SSL' / f'digits6.1@50-{part}.tfrecord'
        run_cli(
            [
                'filter_dataset.py',
                f'--class_filter={keep}',
                order,
                f'--filter_dataset={source}',
                f'--save_name={target}',
            ]
        )
    for name, keep in (('digits6-test', MISMATCH_INLIERS), ('digits6-unseen', MISMATCH_OTHERS)):
        source = root / 'digits-test.tfrecord'
        run_cli(
            ['filter_dataset.py', f'--class_filter={keep}', order, f'--filter_dataset={source}', f'--save_name={name}']
        )
    return root
