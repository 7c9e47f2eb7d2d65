"""Class filtering (filter_dataset.py): which records a class filter keeps, their new labels, where they go."""

import os
import re

from libml.config import parse_int_list
from libml.errors import UserError

import numpy as np

_SPLIT_FILE_RE = re.compile(r'^(?P<stem>(?P<name>[A-Za-z0-9_]+)\.\d+@\d+)-(?P<part>label|unlabel)\.tfrecord$')
_PLAIN_FILE_RE = re.compile(r'^(?P<name>[A-Za-z0-9_]+)-(?P<part>[A-Za-z]+)\.tfrecord$')


def parse_filter_lists(class_filter, label_order=None):
    """--class_filter and --label_order texts -> (list of ints, list or None), checked."""
    values = {
        'class_filter': parse_int_list(class_filter, 'class_filter', each='class'),
        'label_order': parse_int_list(label_order, 'label_order', each='class') if label_order else None,
    }
    for flag, classes in values.items():
        text = class_filter if flag == 'class_filter' else label_order
        lowest = -1 if flag == 'class_filter' else 0
        if classes and min(classes) < lowest:
            raise UserError(
                f'--{flag}={text}: classes are labels >= 0' + (' (or -1 for unlabelled records)' if lowest < 0 else '')
            )
    return values['class_filter'], values['label_order']


def filter_output_path(source, save_name):
    """Where --save_name puts a filtered file: beside `source` for a bare name; .tfrecord appended."""
    if not save_name.endswith('.tfrecord'):
        save_name += '.tfrecord'
    if os.path.dirname(save_name):
        return save_name
    return os.path.join(os.path.dirname(source), save_name)


def relabel(labels, class_filter, label_order=None):
    """Which records a filter keeps and their new labels.

    labels: int array. Keeps records whose label is in `class_filter`; with `label_order`,
    the listed classes become 0..K-1 in that order and every other kept label -1.
    Returns (kept indices, new labels of the kept records).
    """
    labels = np.asarray(labels, np.int64)
    kept = np.flatnonzero(np.isin(labels, class_filter))
    new = labels[kept]
    if label_order is not None:
        lookup = {c: i for i, c in enumerate(label_order)}
        new = np.array([lookup.get(int(v), -1) for v in new], np.int64)
    return kept, new


def heldout_first(kept, new_labels, valid_capacity):
    """Orders a filtered split unlabel file so its held-out labelled records open it.

    kept: increasing source indices; records with index < valid_capacity came from the
    source's held-out head. Returns (positions into `kept` in output order, new capacity):
    head records still labelled, then head records relabelled -1, then the rest.
    """
    kept = np.asarray(kept)
    new_labels = np.asarray(new_labels)
    in_head = kept < valid_capacity
    groups = [
        np.flatnonzero(in_head & (new_labels >= 0)),
        np.flatnonzero(in_head & (new_labels < 0)),
        np.flatnonzero(~in_head),
    ]
    return np.concatenate(groups), len(groups[0])


def describe_record_file(path):
    """What a record file's name says: dict(root, name, part, stem) or None when unrecognised.

    `$ML_DATA/SSL/<name>.<seed>@<size>-label.tfrecord` -> part 'label', stem '<name>.<seed>@<size>',
    root $ML_DATA; `$ML_DATA/<name>-test.tfrecord` -> part 'test', stem None, root $ML_DATA.
    """
    directory, base = os.path.split(os.path.abspath(path))
    match = _SPLIT_FILE_RE.match(base)
    if match:
        return {'root': os.path.dirname(directory), 'name': match['name'], 'part': match['part'], 'stem': match['stem']}
    match = _PLAIN_FILE_RE.match(base)
    if match:
        return {'root': directory, 'name': match['name'], 'part': match['part'], 'stem': None}
    return None
