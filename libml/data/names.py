"""The data root ($ML_DATA), dataset names (`<name>.<seed>@<size>-<valid>`) and the paths of their files."""

import os
import re

from libml.errors import UserError
from libml.files import check_utf8, read_json

from absl import logging

_warned_default_data = False


def data_dir():
    """The data root: `$ML_DATA`, or `./data` (logged once) when unset."""
    global _warned_default_data
    root = os.environ.get('ML_DATA')
    if root:
        check_utf8(root, '$ML_DATA')
        return root
    if not _warned_default_data:
        logging.info('ML_DATA is not set: using ./data')
        _warned_default_data = True
    return 'data'


NAME_PATTERN = '<name>.<seed>@<size>-<valid>'
_NAME_RE = re.compile(r'^(?P<name>[A-Za-z0-9_]+)\.(?P<seed>\d+)@(?P<size>\d+)(?:-(?P<valid>\d+))?$')
_PLAIN_RE = re.compile(r'^(?P<name>[A-Za-z0-9_]+)(?:-(?P<valid>\d+))?$')


class DatasetName:
    """A parsed `<name>.<seed>@<size>-<valid>` (seed/size absent for plain `<name>-<valid>`)."""

    def __init__(self, name, seed=None, size=None, valid=0):
        self.name, self.seed, self.size, self.valid = name, seed, size, valid

    @property
    def split(self):
        """`<name>.<seed>@<size>`: the stem of the split files under $ML_DATA/SSL."""
        return f'{self.name}.{self.seed}@{self.size}'

    def __str__(self):
        stem = self.name if self.seed is None else self.split
        return f'{stem}-{self.valid}'


def parse_dataset_name(text, allow_plain=False, need_valid=True):
    """Parses a dataset name; a UserError showing the expected pattern otherwise.

    `allow_plain` also accepts `<name>-<valid>` (the fully supervised baselines' form).
    """
    match = _NAME_RE.match(text)
    if match:
        if match['valid'] is None and need_valid:
            raise UserError(
                f'dataset {text!r} has no validation size: expected {NAME_PATTERN}, e.g. cifar10.3@250-5000'
            )
        return DatasetName(match['name'], int(match['seed']), int(match['size']), int(match['valid'] or 0))
    plain = _PLAIN_RE.match(text) if allow_plain else None
    if plain:
        return DatasetName(plain['name'], valid=int(plain['valid'] or 0))
    expected = NAME_PATTERN + (' or <name>-<valid>' if allow_plain else '')
    raise UserError(
        f'bad dataset name {text!r}: expected {expected}, where <name> holds only '
        'letters, digits and _ (no "-" or "."), e.g. cifar10.3@250-5000'
    )


def parse_split_name(text):
    """Parses `<name>.<seed>@<size>` (no validation part), as make_aug_copy takes it."""
    match = _NAME_RE.match(text)
    if not match or match['valid'] is not None:
        raise UserError(
            f'bad split name {text!r}: expected <name>.<seed>@<size>, e.g. cifar10.1@250, '
            'where <name> holds only letters, digits and _'
        )
    return DatasetName(match['name'], int(match['seed']), int(match['size']))


def split_paths(split_stem, root=None):
    """Paths of a split's label, unlabel and map files for stem `<name>.<seed>@<size>`."""
    prefix = os.path.join(root or data_dir(), 'SSL', split_stem)
    return prefix + '-label.tfrecord', prefix + '-unlabel.tfrecord', prefix + '-map.json'


def test_path(name, root=None):
    """$ML_DATA/<name>-test.tfrecord (or under `root`)."""
    return os.path.join(root or data_dir(), f'{name}-test.tfrecord')


def unseen_path(name, root=None):
    """$ML_DATA/<name>-unseen.tfrecord: test images of classes outside the labelled ones (outlier AUROC)."""
    return os.path.join(root or data_dir(), f'{name}-unseen.tfrecord')


def train_path(name, root=None):
    """$ML_DATA/<name>-train.tfrecord (or under `root`)."""
    return os.path.join(root or data_dir(), f'{name}-train.tfrecord')


def class_mapping_path(name, root=None):
    """$ML_DATA/<name>_class_mappings.json (or under `root`)."""
    return os.path.join(root or data_dir(), f'{name}_class_mappings.json')


def mapping_file(given, name, root=None):
    """The class mapping of dataset `name`: `given` (--class_mapping: must exist), else
    $ML_DATA/<name>_class_mappings.json when it exists, else None (the names are then the ids)."""
    if given:
        if not os.path.isfile(given):
            raise UserError(f'--class_mapping={given}: file not found')
        return given
    path = class_mapping_path(name, root)
    return path if os.path.exists(path) else None


def _mapping_names(path):
    """{class id: name} of a `{"0": "airplane", ...}` JSON file; UserError when it is not one."""
    mapping = read_json(path, 'class mapping')
    if not isinstance(mapping, dict) or not all(isinstance(k, str) and k.isdigit() for k in mapping):
        raise UserError(f'{path} is not a class mapping: expected a JSON object of class ids to names, {{"0": "cat"}}')
    return {int(k): str(v) for k, v in mapping.items()}


def load_class_names(path, nclass, data_what):
    """Names of classes 0..nclass-1 from the mapping at `path` (the ids '0'..'K-1' when None).

    `nclass` comes from the data (`data_what` names it for the message): a mapping that names
    other ids than 0..nclass-1, or one name twice, is a UserError naming both.
    """
    if not path:
        return [str(i) for i in range(nclass)]
    names = _mapping_names(path)
    if sorted(names) != list(range(nclass)):
        ids = f'ids {min(names)}..{max(names)}' if names else 'no class'
        raise UserError(
            f'class mapping {path} names {len(names)} classes ({ids}) but the data has {nclass} '
            f'(labels 0..{nclass - 1} in {data_what}): fix or remove the mapping, or pass --class_mapping with '
            f'{nclass} names'
        )
    twice = sorted({n for n in names.values() if list(names.values()).count(n) > 1})
    if twice:
        raise UserError(f'class mapping {path} gives two classes the name {twice[0]!r}: names must differ')
    return [names[i] for i in range(nclass)]
