"""Checkpoint files named `model.ckpt-<images:010d>`: save, list, prune, restore with clear errors."""

import glob
import os
import re

from libml.errors import UserError, first_line
from libml.files import check_utf8

import tensorflow as tf

PREFIX = 'model.ckpt'
_NUMBER = re.compile(r'model\.ckpt-(\d+)\.index$')


def path_for(directory, images):
    """Checkpoint prefix for a run dir's `tf/` folder after `images` training images."""
    return os.path.join(directory, f'{PREFIX}-{images:010d}')


def list_checkpoints(directory):
    """Complete checkpoints in `directory`, oldest first, as (images, prefix) pairs."""
    found = []
    for index in glob.glob(os.path.join(directory, PREFIX + '-*.index')):
        match = _NUMBER.search(os.path.basename(index))
        if match:
            found.append((int(match.group(1)), index[: -len('.index')]))
    return sorted(found)


def save(checkpoint, directory, images, keep):
    """Writes a checkpoint, then deletes all but the newest `keep`. Returns its prefix."""
    prefix = checkpoint.write(path_for(directory, images))
    for _, old in list_checkpoints(directory)[:-keep]:
        for path in glob.glob(old + '.*'):
            os.remove(path)
    return prefix


def normalise(path):
    """Accepts a checkpoint prefix, its `.index`/`.data-*` file, or a run dir; returns the prefix."""
    path = re.sub(r'\.(index|data-\d+-of-\d+)$', '', path.rstrip('/'))
    check_utf8(path, 'checkpoint')
    if os.path.isdir(path):
        for candidate in (path, os.path.join(path, 'tf')):
            found = list_checkpoints(candidate)
            if found:
                return found[-1][1]
        raise UserError(f'no checkpoint found in {path}')
    if not os.path.exists(path + '.index'):
        raise UserError(
            f'checkpoint not found: {path} (expected {path}.index; pass a '
            f"{PREFIX}-NNNNNNNNNN prefix from a run's tf/ folder)"
        )
    return path


def restore(checkpoint, path, what='model'):
    """Restores `checkpoint` from `path`; a one-line UserError when it cannot.

    Shapes or structure that disagree (another --arch, image shape or class count) and
    unreadable files (truncated, corrupt, missing .data) both end here, never in a traceback.
    """
    try:
        checkpoint.read(path).expect_partial()
    except (ValueError, AssertionError, tf.errors.InvalidArgumentError) as e:
        raise UserError(
            f'checkpoint {path} does not fit this {what} (different --arch, --filters, --repeat, '
            f'--scales, image shape or class count?): {first_line(e)[:200]}'
        ) from None
    except Exception as e:  # any failure to read the files: the reader raises IndexError, OpError, ...
        gist = first_line(e)[:200]
        raise UserError(f'checkpoint {path} is unreadable (truncated or corrupt files?): {gist}') from None
