"""The guarantees against silent wrong results and stuck runs (issue 8), on real tiny runs."""

import glob
import os
import re
import shutil

from libml import cli, config
from libml.data.streams import DEFAULT_CACHE_MB
from libml.errors import UserError
from libml.report import events
from libml.train import run, run_folder

import pytest
from conftest import TINY_TRAIN, run_cli
from plain import make_trainer

import realmix

DATASET = 'digits.1@50-250'


def run_dir_of(args):
    """The run dir `realmix.py args` trains into, computed from its command line."""
    return config.run_dir(cli.parse(realmix.RealMix, args), realmix.RealMix)


@pytest.mark.parametrize(
    'setting, value, words',
    [
        ('ema', 1.5, 'in [0, 1)'),
        ('lr', -1.0, '>= 0'),
        ('wd', -1.0, '>= 0'),
        ('beta', 0.0, '> 0'),
        ('percent_mask', 1.0, '-1 (off) or in [0, 1)'),
        ('percent_mask', 1.5, '-1 (off)'),
        ('warmup_kimg', -1, '>= 0'),
        ('repeat', 0, '>= 1'),
        ('temperature', 0.0, '> 0'),
        ('report_kimg', 0, '>= 1'),
        ('save_kimg', 0, '>= 1'),
        ('filters', 0, '>= 1'),
        ('nu', 0, '>= 1'),
        ('seed', -1, '>= 0'),
        ('eval_batch', 0, '>= 1'),
        ('bn_momentum', 1.0, 'in [0, 1)'),
        ('batch', 0, '>= 1'),
        ('uratio', 0, '>= 1'),
    ],
)
def test_every_numeric_setting_is_range_checked(setting, value, words):
    with pytest.raises(UserError, match=re.escape(f'--{setting}={value}: must be {words}')):
        config.build(realmix.RealMix, **{setting: value})


def test_mixed_precision_runs_get_their_own_folder_and_float32_runs_keep_theirs():
    plain = os.path.basename(run_dir_of([f'--dataset={DATASET}']))
    mixed = os.path.basename(run_dir_of([f'--dataset={DATASET}', '--mixed_precision']))
    assert 'mixed_precision' not in plain  # folders named before the setting joined the name still resume
    assert mixed == plain.replace('_nu2_', '_mixed_precisionTrue_nu2_'), (plain, mixed)


def test_vat_refuses_mixed_precision():
    import vat

    with pytest.raises(UserError, match=re.escape('--mixed_precision: VAT moves its inputs by 1e-6')):
        config.build(vat.VAT, mixed_precision=True)
    assert not config.build(vat.VAT).mixed_precision


def test_a_bad_flag_is_one_line_before_anything_is_written(digits, tmp_path):
    proc = run_cli(
        ['realmix.py', f'--dataset={DATASET}', f'--train_dir={tmp_path / "exp"}', '--ema=1.5'],
        ml_data=digits,
        check=False,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == ['error: --ema=1.5: must be in [0, 1)']
    assert not os.path.exists(tmp_path / 'exp')


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


def test_eval_ckpt_equals_the_accuracy_training_reported(trained, digits, tmp_path):
    _, run_dir, _ = trained
    reported = dict(events.read_scalars(os.path.join(run_dir, 'tf'), 'accuracy_test'))[2048]
    out = run_cli(
        [
            'realmix.py',
            f'--dataset={DATASET}',
            f'--train_dir={tmp_path}',
            f'--eval_ckpt={run_dir}/tf/model.ckpt-0000002048',
        ]
        + TINY_TRAIN,
        ml_data=digits,
    ).stdout
    evaluated = float(re.search(r'ema .*test +([\d.]+)', out).group(1))
    assert evaluated == pytest.approx(reported, abs=0.01)


def damaged_copy(run_dir, where, damage):
    """A copy of `run_dir` under `where` whose newest checkpoint (2048) is damaged; returns its prefix."""
    copy = os.path.join(where, DATASET, os.path.basename(run_dir))
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns('.lock'))
    newest = os.path.join(copy, 'tf', 'model.ckpt-0000002048')
    [data_file] = glob.glob(newest + '.data-*')
    if damage == 'remove_data':
        os.remove(data_file)
    elif damage == 'truncate_index':
        with open(newest + '.index', 'r+b') as f:
            f.truncate(os.path.getsize(newest + '.index') // 2)
    else:
        raw = bytearray(open(data_file, 'rb').read())
        if damage == 'truncate_data':
            raw = raw[: len(raw) // 2]
        elif damage == 'empty_data':
            raw = b''
        else:
            raw[len(raw) // 2] ^= 0xFF
        open(data_file, 'wb').write(bytes(raw))
    return newest


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


def test_training_resumes_past_a_corrupt_checkpoint_from_the_shell(trained, digits, tmp_path):
    newest = damaged_copy(trained[1], tmp_path, 'truncate_data')
    proc = run_cli(
        ['realmix.py', f'--dataset={DATASET}', f'--train_dir={tmp_path}', '--train_kimg=3'] + TINY_TRAIN, ml_data=digits
    )
    assert f'warning: skipping unreadable checkpoint {newest}' in proc.stdout and 'Traceback' not in proc.stderr
    assert os.path.exists(newest.replace('2048', '3072') + '.index')


def test_a_batch_that_does_not_divide_1024_names_checkpoints_by_the_images_they_hold(digits):
    trainer = make_trainer(batch=48, train_kimg=2, report_kimg=1, save_kimg=1)
    saved, reported = [], []

    class Record:
        def report(self, images, stats, rate):
            reported.append(images)

    trainer.train(0, Record(), saved.append)
    assert saved == reported == [1056, 2064]  # 22 and 43 steps of 48: the first step at or past 1024 and 2048
    assert int(trainer.images_seen.numpy()) == 2064


def test_too_many_stages_for_the_image_is_a_clear_error(digits):
    with pytest.raises(UserError, match='--scales=7 halves the 16-pixel images 6 times: use at most 5 stages'):
        make_trainer(scales=7)


def test_automatic_cache_size_is_pinned_by_the_run_for_an_exact_resume(tmp_path):
    cfg = config.build(realmix.RealMix, train_dir=str(tmp_path))
    run_dir = config.run_dir(cfg, realmix.RealMix)
    first = run.pinned_cache(cfg, run_dir)
    assert first.cache_mb == DEFAULT_CACHE_MB > 0
    run_folder.write_status(run_dir, cache_mb=123)  # what the run's first session used
    assert run.pinned_cache(cfg, run_dir).cache_mb == 123
    assert run.pinned_cache(cfg.replace(cache_mb=0), run_dir).cache_mb == 0  # an explicit value wins
