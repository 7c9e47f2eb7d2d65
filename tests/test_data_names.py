"""Dataset names and the paths of their files (libml/data/names.py)."""

import json
import pathlib

from libml.data import names as datanames
from libml.data.dataset import DataSet
from libml.errors import UserError
from libml.serve import export

import numpy as np
import pytest
from conftest import read
from guards import DATASET


@pytest.mark.parametrize(
    'text, expected',
    [
        ('cifar10.3@250-5000', ('cifar10', 3, 250, 5000)),
        ('mydataset_aug50.3@450-50', ('mydataset_aug50', 3, 450, 50)),
        ('Digits_2.0@1-0', ('Digits_2', 0, 1, 0)),
    ],
)
def test_parse_dataset_name_good(text, expected):
    parsed = datanames.parse_dataset_name(text)
    assert (parsed.name, parsed.seed, parsed.size, parsed.valid) == expected
    assert str(parsed) == text
    assert parsed.split == text.rsplit('-', 1)[0]


@pytest.mark.parametrize(
    'text',
    [
        'my-data.1@50-10',
        'my.data.1@50-10',
        'cifar10.1@50',
        'cifar10-50',
        'cifar10.x@50-10',
        '.1@50-10',
        'cifar10.1@50-10-3',
    ],
)
def test_parse_dataset_name_bad_shows_pattern(text):
    with pytest.raises(UserError, match=r'<name>\.<seed>@<size>-<valid>'):
        datanames.parse_dataset_name(text)


def test_parse_plain_names_for_baselines():
    parsed = datanames.parse_dataset_name('mydataset-50', allow_plain=True)
    assert (parsed.name, parsed.seed, parsed.valid) == ('mydataset', None, 50)
    with pytest.raises(UserError, match='<name>-<valid>'):
        datanames.parse_dataset_name('my-dataset-50', allow_plain=True)


def write_mapping(path, count):
    pathlib.Path(path).write_text(json.dumps({str(i): f'class{i}' for i in range(count)}))
    return str(path)


@pytest.mark.parametrize('count', [6, 300])
def test_the_class_count_comes_from_the_labels_and_a_mapping_must_match_it(digits, tmp_path, count):
    labels = np.concatenate([read(p)[1] for p in datanames.split_paths('digits.1@50', str(digits))[:2]])
    expected = int(max(labels.max(), read(digits / 'digits-test.tfrecord')[1].max())) + 1  # independent count
    assert DataSet.from_name(DATASET).nclass == expected == 10
    mapping = write_mapping(tmp_path / 'names.json', count)
    with pytest.raises(UserError, match=f'class mapping {mapping} names {count} classes .* the data has 10'):
        DataSet.from_name(DATASET, class_mapping=mapping)
    stale = write_mapping(datanames.class_mapping_path('digits', str(digits)), count)  # the default mapping, gone stale
    with pytest.raises(UserError, match=f'class mapping {stale} names {count} classes'):
        DataSet.from_name(DATASET)
    with pytest.raises(UserError, match=f'names {count} classes .*labels 0..9 in the model of ckpt'):
        export.class_names(None, 10, class_mapping=mapping, model='the model of ckpt')


def test_a_mapping_of_the_right_count_names_the_classes_everywhere(digits, tmp_path):
    mapping = write_mapping(tmp_path / 'names.json', 10)
    assert DataSet.from_name(DATASET, class_mapping=mapping).class_names == [f'class{i}' for i in range(10)]
    assert export.class_names(None, 10, mapping) == ([f'class{i}' for i in range(10)], None)
    recorded = [f'r{i}' for i in range(10)]  # what the run recorded at its start wins over $ML_DATA's mapping
    assert export.class_names({'dataset': DATASET}, 10, recorded=recorded, root=str(digits)) == (recorded, None)
    pathlib.Path(mapping).write_text(json.dumps({'0': 'cat', '1': 'cat'}))
    with pytest.raises(UserError, match="gives two classes the name 'cat'"):
        datanames.load_class_names(mapping, 2, 'x')
    with pytest.raises(UserError, match='--class_mapping=.*missing.json: file not found'):
        DataSet.from_name(DATASET, class_mapping=str(tmp_path / 'missing.json'))
