"""The checks a `DataSet` makes when it is built: one-line UserErrors naming the file or flag to fix."""

import os

from libml.data.names import split_paths
from libml.data.records import first_image_shape
from libml.errors import UserError
from libml.files import read_json


def _dims(shape):
    """(H, W, C) -> 'HxWxC'."""
    return 'x'.join(map(str, shape))


def common_shape(label_file, others):
    """(H, W, C) of the first image of `label_file`; UserError when a file of `others` holds another size."""
    shape = first_image_shape(label_file)
    for path in others:
        other = first_image_shape(path)
        if other != shape:
            raise UserError(
                f'{path} holds {_dims(other)} images (height x width x channels) but '
                f'{label_file} holds {_dims(shape)}: re-create them with one --img_size '
                'and colour mode (scripts/create_datasets.py)'
            )
    return shape


def check_holdout(valid, labelled_count, label_file):
    """UserError when holding out `valid` of the `labelled_count` labelled records leaves none to train on."""
    if valid >= labelled_count:
        raise UserError(
            f'validation size {valid} leaves no labelled training image in {label_file} '
            f'({labelled_count} labelled records): use a smaller <valid>'
        )


def check_some_labelled(train_labels, label_file):
    """UserError when the label file holds no labelled training record (train_labels int [N])."""
    if train_labels.size == 0:
        raise UserError(f'{label_file} holds no labelled records (every label is -1)')


def largest_label(labelled):
    """(largest label, the file holding it) over {file: labels int [N]} of the labelled records a run uses."""
    top = {path: int(labels.max(initial=-1)) for path, labels in labelled.items()}
    where = max(top, key=top.get)
    return top[where], where


def data_nclass(nclass, labelled):
    """Number of classes: 1 + the largest label of `labelled` ({file: labels}: training, validation, test).

    UserError when a given --nclass (`nclass`, None or 0 = not given) disagrees.
    """
    top, where = largest_label(labelled)
    if nclass and nclass != top + 1:
        raise UserError(
            f'--nclass={nclass} disagrees with the data ({top + 1} classes: labels 0..{top} in {where}): '
            'drop the flag or fix it'
        )
    return top + 1


def check_img_size(img_size, shape, label_file):
    """UserError when a given --img_size (None or 0 = not given) is not the height of the (H, W, C) `shape`."""
    if img_size and img_size != shape[0]:
        raise UserError(
            f'--img_size={img_size} disagrees with the data ({shape[0]}x{shape[1]} '
            f'images in {label_file}): drop the flag or fix it'
        )


def check_unlabelled_left(count, skip, unlabel_file):
    """UserError when no record of the unlabel file is left to train on after its `skip` held-out ones."""
    if count <= 0:
        raise UserError(f'{unlabel_file} has no training-unlabelled records left after {skip} validation records')


def _source_capacity(split_map, root):
    """valid_capacity of the split an augmented copy was made from (None when unknown)."""
    source = split_map.get('source')
    if not source:
        return None
    source_map = split_paths(source, root)[2]
    if not os.path.exists(source_map):
        return None
    return int(read_json(source_map, 'split map').get('valid_capacity', 0))


def _too_few_held_out(text, parsed, split_map, unlabel_file, root):
    """The message for a <valid> beyond a split's held-out records, suggesting only what works."""
    capacity = int(split_map.get('valid_capacity', 0))
    fixes = [f'use <valid> <= {capacity} (e.g. --dataset={parsed.split}-{capacity})']
    if 'clean_head' in split_map:  # an augmented copy: its head holds the source split's first V held-out records
        source_capacity = _source_capacity(split_map, root)
        if source_capacity is not None and source_capacity > capacity:
            size = min(parsed.valid, source_capacity)
            fixes.append(
                f're-run scripts/make_aug_copy.py --aug_dataset={split_map.get("source")} --valid_size={size} '
                '--overwrite'
            )
    elif split_map.get('label_size') is not None:  # held-out = pool records not picked; a larger pool holds more
        fixes.append('re-create the split with scripts/create_split.py and a larger --label_size')
    return (
        f'--dataset={text}: validation size {parsed.valid} exceeds the {capacity} held-out labelled records at the '
        f'head of {unlabel_file}: ' + ', or '.join(fixes)
    )


def check_valid_capacity(text, parsed, split_map, unlabel_file, root):
    """UserError when the dataset `text` (parsed: a `DatasetName`) asks more validation records than its split holds."""
    if parsed.valid > int(split_map.get('valid_capacity', 0)):
        raise UserError(_too_few_held_out(text, parsed, split_map, unlabel_file, root))


def check_not_test_file(training_files, test_file):
    """UserError when a training file is the test file itself (the same file, even through a link)."""
    for path in training_files:
        if os.path.exists(path) and os.path.exists(test_file) and os.path.samefile(path, test_file):
            raise UserError(
                f'{path} is the test file {test_file} itself: a model trained on the test images measures nothing '
                'on them; use the training file (e.g. <name>-train.tfrecord) instead'
            )


def check_distinct_files(paths):
    """UserError when two of `paths` are the same file (even through a link): its records would count twice."""
    for i, path in enumerate(paths):
        for other in paths[:i]:
            if os.path.exists(path) and os.path.exists(other) and os.path.samefile(path, other):
                raise UserError(f'{other} and {path} are the same file: give each input once')
