"""Helpers of the tests of issue 22's guards: a tiny run's Config, another process (waiting on it, its environment),
writers' temporary files, a split rebuilt from test images, a small PNG."""

import os
import shutil
import time

from libml import cli

import numpy as np
from conftest import TINY_TRAIN, run_cli
from PIL import Image

import realmix

DATASET = 'digits.1@50-250'


def tiny_config(train_dir, **settings):
    """The Config of `realmix.py` with the tests' tiny flags."""
    args = [f'--dataset={DATASET}', f'--train_dir={train_dir}'] + TINY_TRAIN
    args += [f'--{k}={v}' for k, v in settings.items()]
    return cli.parse(realmix.RealMix, args)


def wait_for(condition, what, timeout=120):
    """Polls `condition()` until it is true; fails the test after `timeout` seconds."""
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, f'timed out waiting for {what}'
        time.sleep(0.05)


def python_env(ml_data):
    """The environment of a repository command run on $ML_DATA `ml_data`."""
    return dict(os.environ, ML_DATA=str(ml_data), CUDA_VISIBLE_DEVICES='', TF_CPP_MIN_LOG_LEVEL='3')


def temp_files(folder):
    """The hidden temporary files of writers in `folder`."""
    return sorted(n for n in os.listdir(folder) if n.endswith('.tmp'))


def rebuilt_from_test_images(ml_data):
    """digits.1@50 made again from a copy of the test file's records (the overwrite of issue 22, case 2)."""
    copy = ml_data / 'copy_of_test.tfrecord'
    shutil.copy(ml_data / 'digits-test.tfrecord', copy)
    run_cli(
        [
            'scripts/create_split.py',
            '--overwrite',
            '--seed=1',
            '--label_split_size=50',
            ml_data / 'SSL' / 'digits',
            copy,
        ],
        ml_data,
    )


def png(path, value=0):
    """Writes an 8x8 grey PNG of level `value` at `path`, creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8), value, np.uint8)).save(path)
