"""End-to-end runs of the training commands at tiny size, and the shared loop's guarantees."""

import glob
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import ROOT, TINY_TRAIN, run_cli
from PIL import Image


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


def test_checkpoint_from_another_architecture_is_a_clear_error(trained, digits, tmp_path):
    common = ['realmix.py', '--dataset=digits.1@50-250', f'--train_dir={tmp_path}'] + TINY_TRAIN
    run_dir = trained[1]
    proc = run_cli(
        common + ['--filters=16', f'--eval_ckpt={run_dir}/tf/model.ckpt-0000001024'], ml_data=digits, check=False
    )
    assert proc.returncode == 1 and 'Traceback' not in proc.stderr
    [line] = [x for x in proc.stderr.splitlines() if x.startswith('error:')]
    assert 'does not fit' in line


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


def test_inference_matches_eval_ckpt_accuracy(trained, digits, tmp_path):
    common = ['realmix.py', '--dataset=digits.1@50-250', f'--train_dir={tmp_path}'] + TINY_TRAIN
    run_dir = trained[1]
    ckpt = f'{run_dir}/tf/model.ckpt-0000002048'
    paths = export_test_images(digits, tmp_path / 'images')
    out_dir = tmp_path / 'pred'
    out_dir.mkdir()
    inferred = run_cli(
        common
        + [
            '--perform_inference',
            f'--inference_dir={tmp_path / "images"}',
            f'--inference_ckpt={ckpt}',
            f'--inference_out={out_dir}',
        ],
        ml_data=digits,
    ).stdout
    evaluated = run_cli(common + [f'--eval_ckpt={ckpt}'], ml_data=digits).stdout
    inference_acc = float(re.search(r'Inference accuracy: ([\d.]+)%', inferred).group(1))
    ema_test_acc = float(re.search(r'ema .*test +([\d.]+)', evaluated).group(1))
    assert inference_acc == pytest.approx(ema_test_acc, abs=0.01)
    predicted = np.load(out_dir / 'digits.1@50-250_pred.npy')
    rows = open(out_dir / 'digits.1@50-250_pred.csv').read().splitlines()
    assert rows[0] == 'path,class,confidence' and len(rows) == len(paths) + 1 == len(predicted) + 1
    assert [r.split(',')[0].strip('"') for r in rows[1:]] == sorted(paths)
    again = run_cli(
        common
        + [
            '--perform_inference',
            f'--inference_dir={tmp_path / "images"}',
            f'--inference_ckpt={ckpt}',
            f'--inference_out={out_dir}',
        ],
        ml_data=digits,
        check=False,
    )
    assert again.returncode == 1 and 'already exists' in again.stderr


def test_grayscale_inference_resizes_rgb_images(trained, digits, tmp_path):
    common = ['realmix.py', '--dataset=digits.1@50-250', f'--train_dir={tmp_path}'] + TINY_TRAIN
    run_dir = trained[1]
    folder = tmp_path / 'photos'
    (folder / '3').mkdir(parents=True)
    Image.new('RGB', (40, 30), (200, 10, 10)).save(folder / '3' / 'a.jpg')
    out = run_cli(
        common
        + [
            '--perform_inference',
            f'--inference_dir={folder}',
            f'--inference_ckpt={run_dir}/tf',
            f'--inference_out={tmp_path}',
        ],
        ml_data=digits,
    )
    assert 'Inference accuracy' in out.stdout
    assert np.load(tmp_path / 'digits.1@50-250_pred.npy').shape == (1,)


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
