"""Custom datasets from image folders (libml/data/builders/folders.py): refusals, warnings, messages."""

import os

from libml.data import image_files
from libml.data.builders import folders
from libml.errors import UserError

import pytest
from guards import png


def test_a_custom_dataset_tested_on_its_training_folder_is_refused(tmp_path):
    (tmp_path / 'train' / 'cat').mkdir(parents=True)
    os.symlink(tmp_path / 'train', tmp_path / 'test')
    with pytest.raises(UserError, match='--traindir and --testdir are the same folder'):
        folders.custom(str(tmp_path / 'train'), str(tmp_path / 'test'))


def test_a_single_class_folder_warns(tmp_path, capsys):
    png(tmp_path / 'train' / 'cat' / 'a.png')
    png(tmp_path / 'test' / 'cat' / 'b.png')
    folders.custom(str(tmp_path / 'train'), str(tmp_path / 'test'))
    assert 'holds one class (cat): a classifier needs two or more' in capsys.readouterr().err


def test_bad_image_messages_offer_only_flags_the_command_has(tmp_path):
    bad = tmp_path / 'train' / 'cat' / 'bad.png'
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b'not an image')
    with pytest.raises(UserError) as found:
        image_files.load_image(str(bad))
    assert 'skip_bad_images' not in str(found.value)
    with pytest.raises(UserError, match='or pass --skip_bad_images'):
        folders.custom(str(tmp_path / 'train'), str(tmp_path / 'test'))
