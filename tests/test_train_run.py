"""End-to-end runs of the training commands at tiny size, and the shared loop's guarantees."""

import glob
import hashlib
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time

from libml import cli, config
from libml.data.streams import DEFAULT_CACHE_MB
from libml.errors import UserError
from libml.report import events
from libml.train import run, run_folder

import pytest
from conftest import ROOT, TINY_TRAIN, read, run_cli
from guards import DATASET, python_env, rebuilt_from_test_images, tiny_config, wait_for

import flexmatch
import freematch
import ict
import iomatch
import mean_teacher
import mixup
import openmatch
import pi_model
import pseudo_label
import realmix
import softmatch
import uda
import vat


def run_dirs(train_dir, dataset):
    return sorted(glob.glob(os.path.join(train_dir, dataset, '*')))


def scalars(run_dir, tag):
    from libml.report.events import read_scalars

    return read_scalars(os.path.join(run_dir, 'tf'), tag)


def test_realmix_trains_writes_every_tag_and_extracts_accuracy(trained):
    _, run_dir, out = trained
    assert re.search(r'kimg +2 +accuracy train', out), out
    assert os.path.basename(run_dir).startswith('RealMix_')
    ckpts = sorted(os.path.basename(p) for p in glob.glob(os.path.join(run_dir, 'tf', 'model.ckpt-*.index')))
    assert ckpts == ['model.ckpt-0000001024.index', 'model.ckpt-0000002048.index']
    args = json.load(open(os.path.join(run_dir, 'args', 'args.json')))
    assert args['dataset'] == 'digits.1@50-250' and args['filters'] == 8
    tags = [
        'accuracy_train_labeled',
        'accuracy_valid',
        'accuracy_test',
        'losses/xe',
        'losses/l2u',
        'losses/overall',
        'losses/val_loss',
        'losses/high_prob_ratio',
        'f1_score/macro',
        'f1_score/weighted',
        'precision/macro',
        'precision/weighted',
        'recall/macro',
        'recall/weighted',
        'accuracy_test/0',
        'accuracy_test/9',
        'monitors/wmatch',
        'monitors/tsa_threshold',
        'monitors/img_per_sec',
        'monitors/process_cpu_s',
    ]
    for tag in tags:
        assert [s for s, _ in scalars(run_dir, tag)] == [1024, 2048], tag
    ratio = scalars(run_dir, 'losses/high_prob_ratio')[0][1]
    assert ratio == pytest.approx(1 - int(0.25 * 32) / 32)  # default --percent_mask=0.25 over 2B=32 rows

    out = run_cli(['scripts/extract_accuracy.py', run_dir]).stdout
    stats = json.load(open(os.path.join(run_dir, 'stats', 'accuracy.json')))
    assert set(stats) == {'last01', 'last10', 'last20', 'last50'}
    assert stats['last01'] == pytest.approx(scalars(run_dir, 'accuracy_test')[-1][1])
    assert '"last10"' in out


def test_resume_after_sigkill_continues_step_optimizer_and_data(digits, tmp_path):
    train_dir = tmp_path / 'exp'
    cmd = [
        sys.executable,
        'realmix.py',
        '--dataset=digits.1@50-250',
        f'--train_dir={train_dir}',
        '--train_kimg=3',
    ] + TINY_TRAIN
    env = dict(os.environ, PYTHONPATH=ROOT, ML_DATA=str(digits), TF_CPP_MIN_LOG_LEVEL='3')
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    pattern = os.path.join(train_dir, 'digits.1@50-250', '*', 'tf', 'model.ckpt-0000001024.index')
    while not glob.glob(pattern) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    [run_dir] = run_dirs(train_dir, 'digits.1@50-250')
    assert not os.path.exists(os.path.join(run_dir, 'tf', 'model.ckpt-0000003072.index'))

    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert re.search(r'Resuming from .*model\.ckpt-00000010(24|48)', out.stdout), out.stdout

    import tensorflow as tf

    reader = tf.train.load_checkpoint(os.path.join(run_dir, 'tf', 'model.ckpt-0000003072'))
    assert reader.get_tensor('images_seen/.ATTRIBUTES/VARIABLE_VALUE') == 3072
    assert reader.get_tensor('optimizer/iterations/.ATTRIBUTES/VARIABLE_VALUE') == 3072 // 16


def test_extending_a_run_warns_that_length_dependent_schedules_change(trained, digits, tmp_path):
    train_dir, run_dir, _ = trained
    copy = tmp_path / 'exp'
    shutil.copytree(train_dir, copy)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = run_cli(
        ['realmix.py', '--dataset=digits.1@50-250', f'--train_dir={copy}', '--train_kimg=3'] + TINY_TRAIN,
        ml_data=digits,
    ).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert re.search(r'Resuming from .*model\.ckpt-0000002048', out), out
    [warning] = [line for line in out.splitlines() if line.startswith('warning:')]
    assert 'was trained for --train_kimg=2, now 3' in warning and 'TSA' in warning, warning
    extended = os.path.join(copy, os.path.relpath(run_dir, train_dir), 'tf')
    assert os.path.exists(os.path.join(extended, 'model.ckpt-0000003072.index'))

    # CPU time sums the sessions: the first's, plus what the OS measured for the second process.
    from libml.report.events import training_cpu_seconds

    first = training_cpu_seconds(os.path.join(run_dir, 'tf'))
    second = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert first > 0
    assert 0.5 * second < training_cpu_seconds(extended) - first <= second


def test_nan_loss_stops_and_keeps_last_good_checkpoint(trained, digits, tmp_path):
    train_dir = tmp_path / 'exp'
    common = ['realmix.py', '--dataset=digits.1@50-250', f'--train_dir={train_dir}'] + TINY_TRAIN
    good_dir = trained[1]
    bad_dir = os.path.join(train_dir, 'digits.1@50-250', os.path.basename(good_dir).replace('_lr0.002_', '_lr1e+30_'))
    shutil.copytree(good_dir, bad_dir, ignore=shutil.ignore_patterns('model.ckpt-0000002048*', 'events*'))
    proc = run_cli(common + ['--train_kimg=3', '--lr=1e30'], ml_data=digits, check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert 'Traceback' not in proc.stderr
    assert 'NaN' in proc.stderr and 'model.ckpt-0000001024' in proc.stderr
    assert not glob.glob(os.path.join(bad_dir, 'tf', 'model.ckpt-000000[23]*'))
    out = run_cli(common + ['--lr=1e30', f'--eval_ckpt={bad_dir}/tf/model.ckpt-0000001024'], ml_data=digits)
    assert re.search(r'ema .*test +\d+\.\d+', out.stdout), out.stdout


def export_test_images(ml_data, folder):
    """Writes digits-test.tfrecord as PNGs in class folders; returns the labels in sorted path order."""
    from libml.data.records import read_records

    paths = []
    for i, (png, label) in enumerate(read_records(str(ml_data / 'digits-test.tfrecord'))):
        path = folder / str(label) / f'{i:04d}.png'
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(png)
        paths.append(str(path))
    return paths


TINY_RUN = dict(
    train_kimg=1,
    report_kimg=1,
    save_kimg=1,
    filters=8,
    repeat=1,
    batch=16,
    augment='svhn',
    uratio=2,
    dataset='digits.1@50-250',
    strategy='none',
)


# The monitors/ tags each algorithm's tiny run must write (per-class vectors as <tag>/<class name>).
MONITORS = {
    mixup.MixUp: (),
    ict.ICT: ('weight',),
    mean_teacher.MeanTeacher: ('weight',),
    pi_model.PiModel: ('weight',),
    pseudo_label.PseudoLabel: ('mask', 'weight'),
    vat.VAT: ('weight',),
    flexmatch.FlexMatch: ('mask', 'selected', 'label_accuracy', 'threshold/0', 'threshold/9'),
    freematch.FreeMatch: ('mask', 'global_threshold', 'label_accuracy', 'threshold/0', 'threshold/9'),
    softmatch.SoftMatch: ('mask', 'mu', 'var', 'label_accuracy'),
    uda.UDA: ('mask', 'tsa_threshold', 'label_accuracy'),
    iomatch.IOMatch: ('mask', 'open_mask', 'in_mask', 'p_mask', 'label_accuracy'),
    openmatch.OpenMatch: ('inliers', 'mask', 'label_accuracy'),
}


@pytest.mark.parametrize('cls', list(MONITORS))
def test_each_algorithm_trains_reports_and_saves(digits, tmp_path, cls, capsys):
    cfg = config.build(cls, train_dir=str(tmp_path), **TINY_RUN)
    trainer = run.train(cfg, cls)
    assert 'kimg     1  accuracy train' in capsys.readouterr().out
    run_dir = config.run_dir(cfg, cls)
    assert os.path.basename(run_dir).startswith(cls.name + '_') and 'uratio2' in run_dir
    assert os.path.exists(os.path.join(run_dir, 'tf', 'model.ckpt-0000001024.index'))
    for tag in [f'losses/{name}' for name in cls.loss_names] + [f'monitors/{name}' for name in MONITORS[cls]]:
        assert events.read_scalars(os.path.join(run_dir, 'tf'), tag), tag
    assert int(trainer.images_seen.numpy()) == 1024


def test_automatic_cache_size_is_pinned_by_the_run_for_an_exact_resume(tmp_path):
    cfg = config.build(realmix.RealMix, train_dir=str(tmp_path))
    run_dir = config.run_dir(cfg, realmix.RealMix)
    first = run.pinned_cache(cfg, run_dir)
    assert first.cache_mb == DEFAULT_CACHE_MB > 0
    run_folder.write_status(run_dir, cache_mb=123)  # what the run's first session used
    assert run.pinned_cache(cfg, run_dir).cache_mb == 123
    assert run.pinned_cache(cfg.replace(cache_mb=0), run_dir).cache_mb == 0  # an explicit value wins


def test_a_trainer_stopped_by_sigterm_says_so_and_records_it(digits, tmp_path):
    args = [f'--dataset={DATASET}', f'--train_dir={tmp_path}', '--train_kimg=64'] + TINY_TRAIN
    run_dir = config.run_dir(cli.parse(realmix.RealMix, args), realmix.RealMix)
    status = os.path.join(run_dir, 'run.json')
    proc = subprocess.Popen(
        [sys.executable, 'realmix.py'] + args,
        cwd=ROOT,
        env=python_env(digits),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    wait_for(lambda: os.path.exists(status) and 'training' in open(status).read(), 'training to start')
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM
    assert err.decode().strip().splitlines() == ['error: stopped by SIGTERM']
    assert run_folder.read_status(run_dir)['status'] == 'stopped: SIGTERM'
    assert not [p for p in glob.glob(os.path.join(run_dir, '**', '.*'), recursive=True) if p.endswith('.tmp')]


def test_a_run_refused_before_training_leaves_no_folder(digits, tmp_path):
    cfg = tiny_config(tmp_path / 'exp', train_kimg=1, load_checkpoint=str(tmp_path / 'missing'))
    with pytest.raises(UserError, match='checkpoint not found'):
        run.train(cfg, realmix.RealMix)
    assert not os.path.exists(tmp_path / 'exp')


def test_resuming_on_rebuilt_data_is_refused_and_old_runs_record_their_data(trained, digits, tmp_path, capsys):
    _, source, _ = trained
    train_dir = tmp_path / 'exp'
    run_dir = train_dir / DATASET / os.path.basename(source)
    shutil.copytree(source, run_dir, ignore=shutil.ignore_patterns('.lock'))
    os.remove(run_dir / 'data.json')  # a run folder from before the fingerprint: resumes, and records it
    trainer = run.train(tiny_config(train_dir, train_kimg=3), realmix.RealMix)
    assert int(trainer.images_seen.numpy()) == 3072
    recorded = run_folder.read_data(str(run_dir))
    files = {'label': 'digits.1@50-label', 'unlabel': 'digits.1@50-unlabel', 'test': 'digits-test'}
    for role, stem in files.items():
        path = digits / ('SSL' if role != 'test' else '') / f'{stem}.tfrecord'
        assert recorded[role] == {'bytes': os.path.getsize(path), 'records': len(read(path)[1])}
    map_bytes = (digits / 'SSL' / 'digits.1@50-map.json').read_bytes()
    assert recorded['split_map_sha256'] == hashlib.sha256(map_bytes).hexdigest()

    rebuilt_from_test_images(digits)
    before = {p: p.read_bytes() for p in run_dir.rglob('*') if p.is_file()}
    with pytest.raises(UserError, match=r'was trained on other data: .*its unlabel file held 1247 records .* now 450'):
        run.train(tiny_config(train_dir, train_kimg=4), realmix.RealMix)
    assert {p: p.read_bytes() for p in run_dir.rglob('*') if p.is_file()} == before  # refused: nothing written
    with pytest.raises(UserError, match=r'start a new run instead \(delete or move .*, or pass another --train_dir\)'):
        run.train(tiny_config(train_dir, train_kimg=4), realmix.RealMix)
