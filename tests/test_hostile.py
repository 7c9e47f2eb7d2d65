"""Ten more hostile-user cases (issue 22's own probe): each refused with one line, or recovered from."""

import json
import os
import signal

from libml import config, signals
from libml.data import checks, image_files, names
from libml.data.builders import folders
from libml.errors import UserError
from libml.serve import export
from libml.train import checkpoints, run_folder

import pytest
from conftest import assert_user_error, run_cli

import realmix


def test_file_names_tensorflow_cannot_open_are_refused_before_anything_is_written(tmp_path, monkeypatch):
    not_utf8 = os.path.join(str(tmp_path), os.fsdecode(b'exp\xe9'))
    with pytest.raises(UserError, match='--train_dir=.*: must be a UTF-8 path'):
        config.build(realmix.RealMix, train_dir=not_utf8)
    monkeypatch.setenv('ML_DATA', os.fsdecode(os.path.join(os.fsencode(str(tmp_path)), b'data\xe9')))
    with pytest.raises(UserError, match=r'\$ML_DATA=.*: TensorFlow opens only files whose names are UTF-8'):
        names.data_dir()
    os.makedirs(os.path.join(not_utf8, 'tf'))
    with pytest.raises(UserError, match='checkpoint=.*: TensorFlow opens only'):
        checkpoints.normalise(not_utf8)


def test_a_list_that_repeats_a_seed_or_a_class_is_refused():
    with pytest.raises(UserError, match='--seeds=1,2,1 lists a seed twice'):
        config.parse_int_list('1,2,1', 'seeds', each='seed')
    assert config.parse_int_list('3,1,2', 'seeds', each='seed') == [3, 1, 2]


def test_an_input_given_twice_is_refused(tmp_path):
    first = tmp_path / 'train.tfrecord'
    first.write_bytes(b'')
    os.symlink(first, tmp_path / 'link.tfrecord')
    with pytest.raises(UserError, match='are the same file: give each input once'):
        checks.check_distinct_files([str(first), str(tmp_path / 'other.tfrecord'), str(tmp_path / 'link.tfrecord')])
    checks.check_distinct_files([str(first), str(tmp_path / 'other.tfrecord')])


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


def test_export_replaces_only_an_export(trained, tmp_path):
    _, run_dir, _ = trained
    precious = tmp_path / 'notes.txt'
    precious.write_text('not an export')
    with pytest.raises(UserError, match='notes.txt exists and is not an export'):
        export.export(run_dir, out=str(precious), overwrite=True)
    assert precious.read_text() == 'not an export'


def test_an_image_folder_that_is_a_file_says_so(tmp_path):
    image = tmp_path / 'x.png'
    image.write_bytes(b'')
    with pytest.raises(UserError, match='x.png: is a file, not a folder of images'):
        image_files.list_images(str(image))


def test_filter_dataset_never_writes_over_its_input_even_through_a_link(digits, tmp_path):
    test_file = digits / 'digits-test.tfrecord'
    before = test_file.read_bytes()
    os.symlink(test_file, tmp_path / 'link.tfrecord')
    proc = run_cli(
        [
            'filter_dataset.py',
            '--class_filter=1,2',
            f'--filter_dataset={tmp_path / "link.tfrecord"}',
            f'--save_name={test_file}',
            '--overwrite',
        ],
        digits,
        check=False,
    )
    assert_user_error(proc, 'would replace the input file')
    assert test_file.read_bytes() == before


def test_a_custom_dataset_tested_on_its_training_folder_is_refused(tmp_path):
    (tmp_path / 'train' / 'cat').mkdir(parents=True)
    os.symlink(tmp_path / 'train', tmp_path / 'test')
    with pytest.raises(UserError, match='--traindir and --testdir are the same folder'):
        folders.custom(str(tmp_path / 'train'), str(tmp_path / 'test'))


def test_sighup_stops_like_sigterm():
    previous = {s: signal.getsignal(s) for s in signals.STOP_SIGNALS}
    try:
        signals.install()
        with pytest.raises(signals.Stopped) as stopped:
            os.kill(os.getpid(), signal.SIGHUP)
        assert signals.outcome(stopped.value) == 'stopped: SIGHUP'
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
