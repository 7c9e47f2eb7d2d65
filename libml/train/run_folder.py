"""A run's folder: its lock, args/args.json, run.json (status for scripts), resume and fine-tuning.

Layout: `<train_dir>/<dataset>/<Algorithm>_<settings>/` with `args/args.json` (every setting),
`run.json` (machine-readable status: what the demo and reproduction scripts read), `tf/`
(checkpoints `model.ckpt-<images:010d>` and TensorBoard events) and `.lock` (held by the
training process).
"""

import fcntl
import json
import os

from libml.errors import UserError, first_line, warn
from libml.files import atomic_output, read_json, write_json
from libml.train import checkpoints

import tensorflow as tf
from absl import logging


def ckpt_dir(run_dir):
    return os.path.join(run_dir, 'tf')


def holding(path):
    """The run folder that holds `path`: <run> for a checkpoint <run>/tf/model.ckpt-N (prefix or file),
    for <run>/tf and for <run> itself; the folder of any other file, any other folder itself."""
    path = path.rstrip('/') or '/'
    folder = path if os.path.isdir(path) else os.path.dirname(path)
    return os.path.dirname(folder) if os.path.basename(folder) == 'tf' else folder


class Lock:
    """An exclusive lock on a run dir for one training process (released when it exits).

    A second trainer of the same run dir fails at once with a clear message instead of
    writing interleaved checkpoints and curves.
    """

    def __init__(self, run_dir):
        try:
            os.makedirs(run_dir, exist_ok=True)
        except OSError as e:
            raise UserError(
                f'cannot create the run folder {run_dir} ({e.strerror}): pass a --train_dir you can write to'
            ) from None
        self.path = os.path.join(run_dir, '.lock')
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            owner = _owner(self.fd)
            os.close(self.fd)
            raise UserError(
                f'{run_dir} is being trained by {owner}: wait for it to finish, stop it, or train into '
                'another --train_dir'
            ) from None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f'pid {os.getpid()}'.encode(), 0)

    def release(self):
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def trainer_of(run_dir):
    """Who is training `run_dir` now ('pid N'), or None when no process holds its lock."""
    try:
        fd = os.open(os.path.join(run_dir, '.lock'), os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return _owner(fd)
    finally:
        os.close(fd)  # and with it the shared lock, if taken
    return None


def _owner(fd):
    """The 'pid N' a Lock wrote into its file."""
    return os.pread(fd, 100, 0).decode(errors='replace').strip() or 'another process'


def write_args(run_dir, config):
    """Every setting of the run to args/args.json."""
    path = os.path.join(run_dir, 'args', 'args.json')
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with atomic_output(path, overwrite=True) as tmp, open(tmp, 'w') as f:
        json.dump(config.as_dict(), f, indent=2, sort_keys=True, default=str)


def read_args(run_dir):
    """The settings a run was trained with ({} when args.json is absent)."""
    path = os.path.join(run_dir, 'args', 'args.json')
    return read_json(path, 'run settings') if os.path.exists(path) else {}


def trained_length(run_dir):
    """The --train_kimg of the run whose checkpoints `run_dir` holds; None without checkpoints or settings."""
    if not checkpoints.list_checkpoints(ckpt_dir(run_dir)):
        return None
    return read_args(run_dir).get('train_kimg')


def data_path(run_dir):
    return os.path.join(run_dir, 'data.json')


def _record(path, what):
    """A run's JSON record: {} when absent, or unreadable (cut short, edited) with a warning: it is written again."""
    if not os.path.exists(path):
        return {}
    try:
        record = read_json(path, what)
    except UserError as e:
        record = str(e)
    if not isinstance(record, dict):
        warn(f'{path} is not a readable {what} ({record}): writing it again')
        return {}
    return record


def read_data(run_dir):
    """What the run recorded of its data when it started (`record_data`); {} for runs that predate it."""
    return _record(data_path(run_dir), 'run data record')


def record_data(run_dir, fingerprint, **fields):
    """Writes data.json: the fingerprint of the run's data (`DataSet.fingerprint`) and `fields`."""
    write_json(data_path(run_dir), dict(fingerprint, **fields), overwrite=True)


def data_change(recorded, fingerprint):
    """What differs between the data a run `recorded` and its data now (`fingerprint`); None when nothing does."""
    changes = []
    for role, now in fingerprint.items():
        then = recorded.get(role)
        if then is None or then == now:
            continue
        if role == 'split_map_sha256':
            changes.append('its split map was rewritten (another selection of images)')
        else:
            changes.append(
                f'its {role} file held {then["records"]} records ({then["bytes"]} bytes), '
                f'now {now["records"]} ({now["bytes"]} bytes)'
            )
    return '; '.join(changes) or None


def check_same_data(run_dir, recorded, fingerprint):
    """UserError when a run with checkpoints is resumed on other data than it `recorded` at its start."""
    change = data_change(recorded, fingerprint)
    if change and checkpoints.list_checkpoints(ckpt_dir(run_dir)):
        raise UserError(
            f'{run_dir} was trained on other data: {change} (the dataset or split was rebuilt since). '
            f'Resuming would continue on other images: start a new run instead (delete or move {run_dir}, '
            'or pass another --train_dir), or restore the data it was trained on'
        )


def write_status(run_dir, **fields):
    """Updates run.json: {'run_dir', 'status' (training|done|failed), 'images', 'accuracy': {...}, ...}."""
    path = os.path.join(run_dir, 'run.json')
    record = _record(path, 'run record')
    record.update(fields, run_dir=run_dir)
    with atomic_output(path, overwrite=True) as tmp, open(tmp, 'w') as f:
        json.dump(record, f, indent=2, sort_keys=True)


def read_status(run_dir):
    """run.json of a run ({} when unreadable, with a warning); UserError when the run never started."""
    path = os.path.join(run_dir, 'run.json')
    if not os.path.exists(path):
        raise UserError(f'run record not found: {path}')
    return _record(path, 'run record')


def resume(trainer, run_dir):
    """Restores the newest readable checkpoint of the run; returns its image count (0 if none).

    An unreadable checkpoint (truncated, corrupt, missing a file) is skipped with a one-line
    warning naming it, and the next newest is tried.
    """
    for _, prefix in reversed(checkpoints.list_checkpoints(ckpt_dir(run_dir))):
        try:
            trainer.restore(prefix, 'run')
        except UserError as e:
            print(f'warning: skipping unreadable checkpoint {prefix}: {e}', flush=True)
            logging.warning('skipping unreadable checkpoint %s', prefix)
            continue
        images = int(trainer.images_seen.numpy())
        print(f'Resuming from {prefix} ({images >> 10} kimg)', flush=True)
        return images
    return 0


def fine_tune(trainer, path):
    """Copies every weight but the head's from another run's checkpoint into model and EMA model."""
    path = checkpoints.normalise(path)
    try:
        shapes = tf.train.load_checkpoint(path).get_variable_to_shape_map()
    except (tf.errors.OpError, ValueError) as e:
        raise UserError(f'--load_checkpoint={path}: not a readable checkpoint ({first_line(e)[:200]})') from None
    source_nclass = shapes.get('model/head/bias/.ATTRIBUTES/VARIABLE_VALUE', [trainer.dataset.nclass])[-1]
    source = trainer.create_model(source_nclass)
    checkpoints.restore(tf.train.Checkpoint(model=source), path, 'model')
    for model in (trainer.model, trainer.ema_model):
        head = {id(v) for v in model.head_variables}
        for dst, src in zip(model.variables, source.variables):
            if id(dst) not in head:
                dst.assign(src)
    print(f'Fine-tuning from {path} (all layers but the last)', flush=True)
