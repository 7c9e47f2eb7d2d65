"""A run's data (issue 22): recorded at its start and checked at resume; training images that repeat test images
are counted."""

import glob
import hashlib
import os
import shutil

from libml.data import overlap
from libml.data.dataset import DataSet
from libml.errors import UserError
from libml.train import run, run_folder

import pytest
from conftest import TINY_TRAIN, assert_user_error, read, run_cli
from guards import DATASET, tiny_config

import realmix


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


def test_images_repeating_test_images_are_counted_by_their_pixels(digits, tmp_path, capsys):
    rebuilt_from_test_images(digits)  # every image of the split is a test image
    dataset = DataSet.from_name(DATASET)
    test_pixels = {hashlib.sha256(x.tobytes()).digest() for x in read(digits / 'digits-test.tfrecord')[0]}

    def reference(part):  # independent: Pillow's decoding, sha256 of the pixels
        pixels = read(part.path)[0][part.records]
        return [sum(hashlib.sha256(x.tobytes()).digest() in test_pixels for x in pixels), len(part)]

    parts = dataset.parts()
    counts = overlap.repeats_of_test(parts)
    assert counts == {name: reference(parts[name]) for name in ('labelled', 'validation', 'unlabelled')}
    assert counts == {'labelled': [50, 50], 'validation': [250, 250], 'unlabelled': [200, 200]}
    run._check_data(dataset, str(tmp_path))
    assert capsys.readouterr().out.startswith('warning: 50 of the 50 labelled, 250 of the 250 validation, 200 of')
    clean = DataSet.from_records('x-0', str(digits / 'digits-train.tfrecord'), str(digits / 'digits-test.tfrecord'), 0)
    assert overlap.repeats_of_test(clean.parts()) == {'labelled': [0, 1297]}  # digits' own files share no image


def test_the_test_file_as_training_data_is_refused(digits, tmp_path):
    test_file = str(digits / 'digits-test.tfrecord')
    os.symlink(test_file, tmp_path / 'link.tfrecord')
    for source in (test_file, str(tmp_path / 'link.tfrecord')):
        with pytest.raises(UserError, match=f'{source} is the test file {test_file} itself'):
            DataSet.from_records('x-10', source, test_file, 10)
    proc = run_cli(
        [
            'fully_supervised/fs_baseline.py',
            '--dataset=x-10',
            '--train_record=digits-test.tfrecord',
            '--test_record=digits-test.tfrecord',
            f'--train_dir={tmp_path / "exp"}',
        ]
        + TINY_TRAIN,
        digits,
        check=False,
    )
    assert_user_error(proc, 'is the test file', 'itself')
    assert not os.path.exists(tmp_path / 'exp')
    proc = run_cli(
        ['scripts/create_split.py', '--seed=2', '--label_split_size=50', digits / 'SSL' / 'digits', test_file],
        digits,
        check=False,
    )
    assert_user_error(proc, 'is the test file', 'itself')
    assert not glob.glob(str(digits / 'SSL' / 'digits.2@50*'))
