"""Dataset names and the paths of their files (libml/data/names.py)."""

from libml.data import names as datanames
from libml.errors import UserError

import pytest


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
