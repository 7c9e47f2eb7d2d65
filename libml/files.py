"""Safe file outputs: written to a temporary file beside them, renamed onto them only on success; JSON too.

A full disk or an unwritable folder is a one-line UserError naming the output, and the temporary
files a killed writer left are removed by the next writer of the same output.
"""

import contextlib
import errno
import json
import os
import re
import socket
import tempfile

from libml.errors import UserError

from absl import logging


def check_writable(path, overwrite):
    """Raises UserError if `path` exists and `overwrite` is false."""
    if os.path.exists(path) and not overwrite:
        raise UserError(f'{path} already exists: pass --overwrite to replace it')


# --------------------------------------------------------------------------- temporary files
# A temporary file of `dir/name` is `dir/.name.<host>.<pid>.<random>.tmp`: hidden, beside its
# output (so the final rename stays on one file system), and named after the process writing it,
# so a later writer of the same output can tell a dead writer's leftover (removed) from a live
# one's (kept).


def _host():
    return re.sub(r'[^A-Za-z0-9_-]', '_', socket.gethostname()) or 'host'


def _temp_owner(name, base):
    """(host, pid) of the writer of temporary file `name` of output `base`, or None when not one."""
    prefix = '.' + base + '.'
    if not (name.startswith(prefix) and name.endswith('.tmp')):
        return None
    parts = name[len(prefix) : -len('.tmp')].split('.')
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    return parts[0], int(parts[1])


def _alive(pid):
    """Whether process `pid` exists on this machine and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f'/proc/{pid}/stat') as f:
            return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except (OSError, IndexError):
        return True


def remove_stale_temps(path):
    """Removes the temporary files of `path` left by writers of this machine that no longer run.

    A live writer's file (another run writing the same output right now) is never touched; nor
    are files of other machines sharing the folder. Returns the removed paths.
    """
    directory, base = os.path.split(os.path.abspath(path))
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    removed = []
    for name in names:
        owner = _temp_owner(name, base)
        if owner is None or owner[0] != _host() or owner[1] == os.getpid() or _alive(owner[1]):
            continue
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(directory, name))
            removed.append(os.path.join(directory, name))
    if removed:
        logging.info('removed %d temporary file(s) of %s left by interrupted runs', len(removed), path)
    return removed


def _new_temp_file(path):
    """Creates an empty temporary file beside `path` (see above) with ordinary (umask) permissions.

    Removes the stale ones of `path` first. UserError naming the folder when it cannot be written.
    """
    directory = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as e:
        what = 'is a file, not a folder' if os.path.isfile(directory) else f'cannot be created ({_reason(e)})'
        raise UserError(f'cannot write {path}: {directory} {what}; choose another output location') from None
    remove_stale_temps(path)
    try:
        fd, tmp = tempfile.mkstemp(
            prefix=f'.{os.path.basename(path)}.{_host()}.{os.getpid()}.', suffix='.tmp', dir=directory
        )
    except OSError as e:
        raise UserError(_failure_message(e, [path], full=e.errno in _DISK_FULL)) from None
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    return tmp


@contextlib.contextmanager
def temporary_file(beside):
    """Yields the path of a scratch file next to `beside`, removed on exit (even on failure).

    Named like an output's temporary file, so a killed run's scratch file is removed by the next
    run writing `beside`.
    """
    tmp = _new_temp_file(beside)
    try:
        yield tmp
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)


# --------------------------------------------------------------------------- write failures

_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
_NOT_WRITABLE = (errno.EROFS, errno.EACCES, errno.EPERM)


def _reason(error):
    return getattr(error, 'strerror', None) or str(error).strip().splitlines()[0]


def _failure_message(error, paths, full):
    """The one line for a failed write of the outputs `paths` (full disk or unwritable folder)."""
    what = ', '.join(paths)
    folders = ', '.join(sorted({os.path.dirname(os.path.abspath(p)) for p in paths}))
    if full:
        return (
            f'no space left on the device of {folders} while writing {what}: free some space there or '
            'write the output to another disk (another $ML_DATA or output path)'
        )
    return (
        f'cannot write {what}: the folder {folders} is not writable ({_reason(error).rstrip(".")}); '
        'fix its permissions or choose another output location'
    )


def _write_error_message(error, paths, temps):
    """One line for a write failure (full disk, read-only or forbidden folder) of outputs `paths`.

    `error` is an OSError or a TensorFlow error (recognised by its message: TensorFlow is not
    imported here); `temps` are the temporary files of `paths`, in order, to tell which output
    failed. None when `error` is not such a failure of these outputs (e.g. an unreadable input).
    """
    text = str(error)
    code = getattr(error, 'errno', None)
    named = {getattr(error, 'filename', None), getattr(error, 'filename2', None)} - {None}
    culprit = next((p for p, t in zip(paths, temps) if t in named or p in named or t in text), None)
    if code in _DISK_FULL or 'No space left on device' in text or 'Disk quota exceeded' in text:
        return _failure_message(error, [culprit] if culprit else paths, full=True)
    if culprit and (code in _NOT_WRITABLE or 'Read-only file system' in text or 'Permission denied' in text):
        return _failure_message(error, [culprit], full=False)
    return None


@contextlib.contextmanager
def _translated_write_errors(paths, temps):
    """Re-raises write failures inside the block as one-line UserErrors naming the real outputs."""
    try:
        yield
    except UserError:
        raise
    except Exception as e:
        message = _write_error_message(e, paths, temps)
        if message is None:
            raise
        raise UserError(message) from None


# --------------------------------------------------------------------------- atomic outputs


@contextlib.contextmanager
def atomic_output(path, overwrite=False):
    """Yields a temporary path next to `path`; renames it onto `path` only on success.

    On any failure the temporary file is removed, so no half-written output is left; temporary
    files of earlier runs killed while writing `path` are removed first. A full disk or an
    unwritable folder is a one-line UserError naming `path` and its folder.
    """
    with atomic_outputs([path], overwrite) as (tmp,):
        yield tmp


@contextlib.contextmanager
def atomic_outputs(paths, overwrite=False):
    """Like `atomic_output` for several files that must appear together or not at all.

    Every path is checked before anything is written; the renames happen only after the
    whole block succeeded.
    """
    for path in paths:
        remove_stale_temps(path)
    for path in paths:
        check_writable(path, overwrite)
    with contextlib.ExitStack() as stack:
        tmps = [stack.enter_context(temporary_file(p)) for p in paths]
        with _translated_write_errors(paths, tmps):
            yield tmps
            for tmp, path in zip(tmps, paths):
                os.replace(tmp, path)


def write_json(path, obj, overwrite=False):
    """Writes `obj` as indented JSON, atomically."""
    with atomic_output(path, overwrite) as tmp, open(tmp, 'w') as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write('\n')


def read_json(path, what='file'):
    """Reads JSON, with a one-line UserError naming the file when missing or corrupt."""
    if not os.path.exists(path):
        raise UserError(f'{what} not found: {path}')
    try:
        with open(path) as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise UserError(f'{path} is not valid JSON ({e.msg} at line {e.lineno})') from None
