"""Helpers of the tests of issue 22's guards: a tiny run's Config, waiting on another process, its environment."""

import os
import time

from libml import cli

from conftest import TINY_TRAIN

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
