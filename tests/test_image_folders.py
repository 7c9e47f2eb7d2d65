"""Image folders (issue 22): links followed, non-regular files skipped, classes from the class folder, byte-safe
names."""

import json
import os
import shutil
import subprocess
import sys

from libml import files
from libml.data import image_files
from libml.data.builders import folders
from libml.errors import UserError
from libml.report import events
from libml.serve import inference

import numpy as np
import pytest
import tensorflow as tf
from conftest import ROOT
from guards import python_env
from PIL import Image


def png(path, value=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8), value, np.uint8)).save(path)


def test_image_folders_follow_links_skip_what_is_not_a_file_and_name_classes_by_their_folder(tmp_path, capsys):
    root, elsewhere = tmp_path / 'train', tmp_path / 'elsewhere'
    png(root / 'cat' / '2019' / 'a.png', 10)
    png(root / 'cat' / 'b.png', 20)
    png(elsewhere / 'dog' / '2019' / 'c.png', 200)
    os.symlink(elsewhere / 'dog', root / 'dog')  # a class folder that is a link
    os.symlink(root, root / 'cat' / 'loop')  # a link back up: listed once
    os.symlink(tmp_path / 'nowhere.png', root / 'cat' / 'broken.png')
    os.mkfifo(root / 'cat' / 'fifo.png')  # reading it would block forever
    found = [os.path.relpath(p, root) for p in image_files.list_images(str(root))]
    assert found == ['cat/2019/a.png', 'cat/b.png', 'dog/2019/c.png']
    warnings = capsys.readouterr().err.splitlines()
    assert sorted(w.split(':')[0] for w in warnings) == ['warning'] * 3
    assert any('fifo.png: not a regular file' in w for w in warnings) and any('loop' in w for w in warnings)
    assert [image_files.class_of(root / p, root) for p in found] == ['cat', 'cat', 'dog']
    built, _ = folders.custom(str(root), str(root))
    assert built.class_names == ['cat', 'dog']
    items, count = built.splits['train']
    assert count == 3 and [label for _, label in items] == [0, 0, 1]


def test_a_single_class_folder_warns(tmp_path, capsys):
    png(tmp_path / 'train' / 'cat' / 'a.png')
    folders.custom(str(tmp_path / 'train'), str(tmp_path / 'train'))
    assert 'holds one class (cat): a classifier needs two or more' in capsys.readouterr().err


def test_predictions_keep_file_names_byte_for_byte_and_never_start_a_formula(tmp_path):
    folder = tmp_path / 'inference'
    name = os.fsdecode(b'caf\xe9.png')  # not UTF-8
    png(folder / '=cmd' / name, 100)
    png(folder / 'b' / '1.png', 200)
    brightness = lambda x: tf.stack([tf.reduce_mean(x, [1, 2, 3]), -tf.reduce_mean(x, [1, 2, 3])], axis=1)
    inference.infer(brightness, (8, 8, 1), ['=cmd', '-1'], str(folder), str(tmp_path / 'out' / 'p'), 4, False)
    assert np.load(tmp_path / 'out' / 'p.npy').tolist() == [1, 0]  # the darker image first ('=' sorts before 'b')
    rows = (tmp_path / 'out' / 'p.csv').read_bytes().splitlines()
    assert rows[1].startswith(os.fsencode(str(folder)) + b'/=cmd/caf\xe9.png,-1,')  # the name as on disk; -1 a number
    assert rows[2].startswith(os.fsencode(str(folder)) + b"/b/1.png,'=cmd,")  # a formula-like name quoted
    assert files.csv_cell('+0.5') == '+0.5' and files.csv_cell('@SUM(A1)') == "'@SUM(A1)"


def test_bad_image_messages_offer_only_flags_the_command_has(tmp_path):
    bad = tmp_path / 'train' / 'cat' / 'bad.png'
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b'not an image')
    with pytest.raises(UserError) as found:
        image_files.load_image(str(bad))
    assert 'skip_bad_images' not in str(found.value)
    with pytest.raises(UserError, match='or pass --skip_bad_images'):
        folders.custom(str(tmp_path / 'train'), str(tmp_path / 'train'))


def test_extract_accuracy_reads_a_run_folder_whose_name_is_not_utf8(trained, tmp_path):
    _, run_dir, _ = trained
    copy = os.path.join(str(tmp_path), os.fsdecode(b'r\xe9n'))
    shutil.copytree(run_dir, copy)
    proc = subprocess.run(
        [sys.executable, 'scripts/extract_accuracy.py', copy], cwd=ROOT, capture_output=True, env=python_env(tmp_path)
    )
    assert proc.returncode == 0, proc.stderr
    last = events.read_scalars(os.path.join(run_dir, 'tf'), 'accuracy_test')[-1][1]
    assert json.loads(open(os.path.join(copy, 'stats', 'accuracy.json')).read())['last01'] == last
