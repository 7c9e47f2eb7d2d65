"""A run's folder: its lock, resume past unreadable checkpoints, fine-tuning (libml/train/run_folder.py)."""

import glob
import json
import os
import re

from libml import cli
from libml.train import run, run_folder

import numpy as np
import pytest
from conftest import TINY_TRAIN, run_cli
from test_config import DATASET, damaged_copy, run_dir_of
from test_train_run import run_dirs

import realmix


def test_a_second_trainer_of_the_same_run_dir_fails_fast(digits, tmp_path):
    args = [f'--dataset={DATASET}', f'--train_dir={tmp_path}', '--train_kimg=1'] + TINY_TRAIN
    lock = run_folder.Lock(run_dir_of(args))  # a training process holding the run dir
    try:
        proc = run_cli(['realmix.py'] + args, ml_data=digits, check=False)
    finally:
        lock.release()
    assert proc.returncode == 1 and 'Traceback' not in proc.stderr
    assert re.match(rf'error: {re.escape(run_dir_of(args))} is being trained by pid {os.getpid()}', proc.stderr)
    assert not glob.glob(os.path.join(run_dir_of(args), 'tf', '*.index'))


def test_a_train_dir_that_cannot_be_created_names_the_flag(digits, tmp_path):
    blocker = tmp_path / 'a_file'
    blocker.write_text('not a folder')
    args = [f'--dataset={DATASET}', f'--train_dir={blocker / "exp"}', '--train_kimg=1'] + TINY_TRAIN
    proc = run_cli(['realmix.py'] + args, ml_data=digits, check=False)
    assert proc.returncode == 1 and 'Traceback' not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and re.match(r'error: cannot create the run folder .*a_file/exp/.*--train_dir', lines[0])


@pytest.mark.parametrize('damage', ['truncate_data', 'empty_data', 'flip_data', 'remove_data', 'truncate_index'])
def test_resume_skips_an_unreadable_newest_checkpoint(trained, digits, tmp_path, damage, capsys):
    _, run_dir, _ = trained
    newest = damaged_copy(run_dir, tmp_path, damage)
    args = [f'--dataset={DATASET}', f'--train_dir={tmp_path}'] + TINY_TRAIN
    trainer = run.make_trainer(cli.parse(realmix.RealMix, args), realmix.RealMix)
    assert run_folder.resume(trainer, os.path.dirname(os.path.dirname(newest))) == 1024
    out = capsys.readouterr().out
    assert f'warning: skipping unreadable checkpoint {newest}' in out
    assert 'Resuming from ' + newest.replace('2048', '1024') in out


@pytest.mark.slow  # 50-100 s; test_resume_skips_an_unreadable_newest_checkpoint above is the same resume in-process
def test_training_resumes_past_a_corrupt_checkpoint_from_the_shell(trained, digits, tmp_path):
    newest = damaged_copy(trained[1], tmp_path, 'truncate_data')
    proc = run_cli(
        ['realmix.py', f'--dataset={DATASET}', f'--train_dir={tmp_path}', '--train_kimg=3'] + TINY_TRAIN, ml_data=digits
    )
    assert f'warning: skipping unreadable checkpoint {newest}' in proc.stdout and 'Traceback' not in proc.stderr
    assert os.path.exists(newest.replace('2048', '3072') + '.index')


def test_load_checkpoint_copies_every_layer_but_the_head(trained, digits, tmp_path):
    import tensorflow as tf

    source = trained[1] + '/tf/model.ckpt-0000002048'
    out = run_cli(
        [
            'realmix.py',
            '--dataset=digits.1@50-250',
            f'--train_dir={tmp_path}',
            '--train_kimg=1',
            '--lr=0',
            f'--load_checkpoint={source}',
        ]
        + TINY_TRAIN,
        ml_data=digits,
    ).stdout
    assert 'Fine-tuning from' in out
    [run_dir] = run_dirs(tmp_path, 'digits.1@50-250')
    before = tf.train.load_checkpoint(source)
    after = tf.train.load_checkpoint(os.path.join(run_dir, 'tf', 'model.ckpt-0000001024'))
    keys = [
        k
        for k in before.get_variable_to_shape_map()
        if k.startswith('model/') and k.endswith('VARIABLE_VALUE') and 'moving' not in k
    ]
    head = [k for k in keys if k.startswith('model/head/')]
    assert len(head) == 2 and len(keys) > 10
    for key in keys:
        same = np.array_equal(before.get_tensor(key), after.get_tensor(key))
        assert same == (key not in head), key  # lr=0: trained weights stay as loaded, the head is new


def test_a_cut_short_run_record_is_written_again_with_a_warning(tmp_path, capsys):
    run_folder.write_status(str(tmp_path), status='training', cache_mb=7)
    text = (tmp_path / 'run.json').read_text()
    (tmp_path / 'run.json').write_text(text[: len(text) // 2])  # a disk that filled up under another tool
    assert run_folder.read_status(str(tmp_path)) == {}
    run_folder.write_status(str(tmp_path), status='done')
    assert json.loads((tmp_path / 'run.json').read_text()) == {'run_dir': str(tmp_path), 'status': 'done'}
    (tmp_path / 'data.json').write_text('[1, 2]')
    assert run_folder.read_data(str(tmp_path)) == {}
    err = capsys.readouterr().err
    assert 'run.json is not a readable run record' in err and 'data.json is not a readable run data record' in err
