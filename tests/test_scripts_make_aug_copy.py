"""scripts/make_aug_copy.py end to end."""

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

from libml.data import names as datanames
from libml.data.dataset import DataSet
from libml.data.records import count_records

import tensorflow as tf
from conftest import ROOT, assert_user_error, run_cli, tmpfs
from test_data_dataset import NCLASS, build_dataset, index_of, take_images
from test_data_splits import files_under, parsed, records, reference_copies, temp_files, temp_name


def test_make_aug_copy(ml_data, tmp_path):
    split = build_dataset(str(ml_data), n_train=220, n_unlabelled=20, label_size=200)  # 150 held out + 20
    names = {str(i): f'class{i}' for i in range(NCLASS)}
    pathlib.Path(datanames.class_mapping_path('tiny', str(ml_data))).write_text(json.dumps(names))
    other = tmp_path / 'other_ml_data'
    shutil.copytree(ml_data, other)
    command = [
        'scripts/make_aug_copy.py',
        '--aug_dataset=tiny.1@50',
        '--aug_copy=3',
        '--augment=svhn',
        '--unlabel_size=20',
    ]
    run_cli(command + ['--workers=3'], ml_data)
    run_cli(command + ['--workers=1'], other)
    assert files_under(ml_data) == files_under(other)
    for name in files_under(ml_data):  # the same files, byte for byte, whatever the number of threads
        assert pathlib.Path(ml_data / name).read_bytes() == pathlib.Path(other / name).read_bytes(), name
    label_file, unlabel_file, map_file = datanames.split_paths('tiny_aug3.1@50', str(ml_data))
    source = datanames.split_paths('tiny.1@50', str(ml_data))
    assert pathlib.Path(label_file).read_bytes() == pathlib.Path(source[0]).read_bytes()
    serialized = [r.numpy() for r in tf.data.TFRecordDataset(unlabel_file)]
    assert serialized[:150] == [r.numpy() for r in tf.data.TFRecordDataset(source[1]).take(150)]
    # the augmented images and their order are those of the original per-image pipeline
    assert parsed(serialized[150:]) == reference_copies(source[1], 150, 20, 3, 'svhn', 1, (16, 16, 1), 10000)
    images, labels = records(unlabel_file)
    assert len(labels) == 150 + 3 * 20
    head = [index_of(x) for x in images[:150]]
    assert head == split['unlabel'][:150].tolist()
    tail = [index_of(x) for x in images[150:]]
    assert sorted(tail) == sorted(split['unlabel'][150:].tolist() * 3)
    assert labels.tolist() == [i % NCLASS if i < 200 else -1 for i in head + tail]
    assert json.loads(pathlib.Path(map_file).read_text())['valid_capacity'] == 150
    assert json.loads(pathlib.Path(datanames.class_mapping_path('tiny_aug3', str(ml_data))).read_text()) == names
    test_copy = datanames.test_path('tiny_aug3', str(ml_data))
    assert pathlib.Path(test_copy).read_bytes() == pathlib.Path(datanames.test_path('tiny', str(ml_data))).read_bytes()

    ds = DataSet.from_name('tiny_aug3.1@50-100')
    valid, valid_labels = take_images(ds.eval_valid(64), 1000)
    assert [index_of(x) for x in valid] == split['unlabel'][:100].tolist()
    assert valid_labels.tolist() == [i % NCLASS for i in split['unlabel'][:100]]
    assert ds.class_names[3] == 'class3' and ds.unlabel_count == 3 * 20  # the clean head is never trained on

    before = {f: pathlib.Path(ml_data / f).read_bytes() for f in files_under(ml_data)}
    proc = run_cli(
        [
            'scripts/make_aug_copy.py',
            '--aug_dataset=tiny.1@50',
            '--aug_copy=2',
            '--augment=cutout',
            '--unlabel_size=170',
        ],
        ml_data,
        check=False,
    )
    assert_user_error(proc, '--unlabel_size=170', 'holds 20 unlabelled training')
    assert {f: pathlib.Path(ml_data / f).read_bytes() for f in files_under(ml_data)} == before


def test_make_aug_copy_of_a_benchmark_split_augments_everything_and_keeps_a_clean_head(ml_data):
    split = build_dataset(str(ml_data), n_train=150, size=50)  # no --label_size: 100 held-out records
    run_cli(
        [
            'scripts/make_aug_copy.py',
            '--aug_dataset=tiny.1@50',
            '--aug_copy=2',
            '--augment=cifar10',
            '--unlabel_size=100',
        ],
        ml_data,
    )
    images, labels = records(datanames.split_paths('tiny_aug2.1@50', str(ml_data))[1])
    assert len(labels) == 100 + 2 * 100
    assert sorted(index_of(x) for x in images[100:]) == sorted(split['unlabel'].tolist() * 2)
    ds = DataSet.from_name('tiny_aug2.1@50-60')
    valid, valid_labels = take_images(ds.eval_valid(64), 1000)
    assert [index_of(x) for x in valid] == split['unlabel'][:60].tolist()
    assert valid_labels.tolist() == [i % NCLASS for i in split['unlabel'][:60]]
    assert ds.unlabel_count == 200


def test_a_killed_make_aug_copy_leaves_temporary_files_that_the_next_run_removes(ml_data):
    build_dataset(str(ml_data), n_train=220, n_unlabelled=20, label_size=200)
    command = [sys.executable, 'scripts/make_aug_copy.py', '--aug_dataset=tiny.1@50', '--aug_copy=60', '--augment=svhn']
    env = dict(os.environ, ML_DATA=str(ml_data), TF_CPP_MIN_LOG_LEVEL='3', CUDA_VISIBLE_DEVICES='')
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not temp_files(ml_data) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)  # mid-write: its temporary files exist, nothing is renamed yet
    assert proc.wait() == -signal.SIGKILL
    left = temp_files(ml_data)
    assert left and all(f'.{proc.pid}.' in name for name in left), left
    assert not os.path.exists(datanames.split_paths('tiny_aug60.1@50', str(ml_data))[1])
    live = temp_name(datanames.split_paths('tiny_aug2.1@50', str(ml_data))[1], os.getpid())  # another output's writer
    pathlib.Path(live).touch()
    run_cli(command[1:], ml_data)
    assert temp_files(ml_data) == [os.path.relpath(live, ml_data)]
    assert count_records(datanames.split_paths('tiny_aug60.1@50', str(ml_data))[1]) == 150 + 60 * 20


def test_full_disk_during_make_aug_copy(ml_data):
    with tmpfs(ml_data / 'SSL', 'size=96k') as ssl:
        build_dataset(str(ml_data), n_train=220, n_unlabelled=20, label_size=200)
        before = files_under(ssl)
        proc = run_cli(
            ['scripts/make_aug_copy.py', '--aug_dataset=tiny.1@50', '--aug_copy=200', '--augment=svhn'],
            ml_data,
            check=False,
        )
        assert_user_error(proc, 'no space left on the device', str(ssl), 'tiny_aug200.1@50-unlabel.tfrecord')
        assert '.tmp' not in proc.stderr and files_under(ssl) == before


def test_make_aug_copy_lists_only_augmentations_it_takes(digits):
    proc = run_cli(
        ['scripts/make_aug_copy.py', '--aug_dataset=digits.1@50', '--aug_copy=2', '--augment=foo'], digits, check=False
    )
    assert_user_error(proc, '--augment=foo is not an augmentation: choose cifar10, svhn, stl10, color or cutout')
