"""Safe file outputs: written to a temporary file beside them, renamed onto them only on success; JSON too.

A full disk or an unwritable folder is a one-line UserError naming the output; one process at a
time writes an output, and the temporary files a killed writer left are removed by the next
writer in the same folder.
"""

import contextlib
import csv
import errno
import fcntl
import json
import os
import re
import shutil
import socket
import tempfile
import threading

from libml.errors import UserError

from absl import logging


def is_utf8(path):
    """Whether the file name `path` is UTF-8: TensorFlow opens and writes files by UTF-8 names only."""
    try:
        os.fsencode(path).decode('utf-8')
    except UnicodeDecodeError:
        return False
    return True


def check_utf8(path, what):
    """UserError naming `what` (a flag, a variable) when `path` is not a UTF-8 file name (see `is_utf8`)."""
    if not is_utf8(path):
        raise UserError(f'{what}={path}: TensorFlow opens only files whose names are UTF-8; rename it')


def check_writable(path, overwrite):
    """Raises UserError if `path` exists and `overwrite` is false."""
    if os.path.exists(path) and not overwrite:
        raise UserError(f'{path} already exists: pass --overwrite to replace it')


# --------------------------------------------------------------------------- temporary files
# A temporary file (or folder) of `dir/name` is `dir/.name.<host>.<pid>.<random>.tmp`: hidden, beside
# its output (so the final rename stays on one file system), and named after the process writing it.
# That name makes two rules possible. Exclusive writer: a process refuses to write an output that
# a live process of this machine is writing (its temporary file exists). Cleaning: the next writer
# in a folder removes every temporary file there whose writer of this machine no longer runs
# (killed by -9, a power cut), whatever output it was for; files of other machines are left alone.

_TEMP = re.compile(r'^\.(?P<base>.+)\.(?P<host>[A-Za-z0-9_-]+)\.(?P<pid>\d+)\.[A-Za-z0-9_]+\.tmp$')


def _host():
    return re.sub(r'[^A-Za-z0-9_-]', '_', socket.gethostname()) or 'host'


def _temp_owner(name):
    """(output base name, pid) of the temporary file `name` written by a process of this machine, or None."""
    match = _TEMP.match(name)
    if not match or match['host'] != _host():
        return None
    return match['base'], int(match['pid'])


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


def remove_stale_temps(directory):
    """Removes the temporary files and folders in `directory` whose writer of this machine no longer runs.

    A live writer's file is never touched; nor are files of other machines sharing the folder.
    Returns the removed paths.
    """
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    removed = []
    for name in names:
        owner = _temp_owner(name)
        if owner is None or owner[1] == os.getpid() or _alive(owner[1]):
            continue
        path = os.path.join(directory, name)
        _remove(path)
        removed.append(path)
    if removed:
        logging.info('removed %d temporary file(s) in %s left by interrupted runs', len(removed), directory)
    return removed


def _refuse_other_writer(path, names):
    """UserError when a live process of this machine writes `path` now (one of `names` is its temporary file)."""
    for name in names:
        owner = _temp_owner(name)
        if owner and owner[0] == os.path.basename(path) and owner[1] != os.getpid() and _alive(owner[1]):
            raise UserError(
                f'{path} is being written by pid {owner[1]} now: wait for it to finish (or stop it), then run again'
            )


_held_folders = set()  # folders this process holds the lock of (folder_lock)
_folders_guard = threading.RLock()


def _lock_folder(directory):
    """An open descriptor of `directory` holding its exclusive flock; None where the system cannot lock it."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError:
        os.close(fd)
        return None
    return fd


@contextlib.contextmanager
def folder_lock(directory):
    """Holds an exclusive lock on the folder `directory` (flock on the folder itself) for the block.

    Re-entrant within a process; other processes wait. Where the file system cannot lock a folder,
    the block runs unlocked.
    """
    directory = os.path.realpath(directory)
    with _folders_guard:
        if directory in _held_folders:
            yield
            return
        fd = _lock_folder(directory)
        _held_folders.add(directory)
        try:
            yield
        finally:
            _held_folders.discard(directory)
            if fd is not None:
                os.close(fd)  # and with it the lock


def _output_folder(path):
    """The folder of output `path`, created if needed; UserError naming it when it cannot be."""
    directory = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as e:
        what = 'is a file, not a folder' if os.path.isfile(directory) else f'cannot be created ({_reason(e)})'
        raise UserError(f'cannot write {path}: {directory} {what}; choose another output location') from None
    return directory


def _new_temp(path, folder=False):
    """Creates an empty temporary file (or folder) beside `path` with ordinary (umask) permissions.

    Under the folder's lock: removes the stale temporary files there, refuses when another live
    process writes `path`, then creates this one. UserError naming the folder when it cannot be written.
    """
    directory = _output_folder(path)
    with folder_lock(directory):
        remove_stale_temps(directory)
        _refuse_other_writer(path, os.listdir(directory))
        prefix = f'.{os.path.basename(path)}.{_host()}.{os.getpid()}.'
        try:
            if folder:
                tmp = tempfile.mkdtemp(prefix=prefix, suffix='.tmp', dir=directory)
            else:
                fd, tmp = tempfile.mkstemp(prefix=prefix, suffix='.tmp', dir=directory)
                os.close(fd)
        except OSError as e:
            raise UserError(_failure_message(e, [path], full=e.errno in _DISK_FULL)) from None
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, (0o777 if folder else 0o666) & ~umask)
    return tmp


def _remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


@contextlib.contextmanager
def temporary_file(beside, folder=False):
    """Yields the path of a scratch file (or folder) next to `beside`, removed on exit (even on failure).

    Named like an output's temporary file: a killed run's scratch file is removed by the next
    writer in that folder, and another process cannot write `beside` meanwhile.
    """
    tmp = _new_temp(beside, folder)
    try:
        yield tmp
    finally:
        _remove(tmp)


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


_FORMULA_STARTS = ('=', '+', '-', '@', '\t', '\r')


def csv_cell(value):
    """`value` as text for a CSV cell that spreadsheets show as it is: text starting like a formula
    (=, +, -, @, tab, return) gets a leading ' (numbers such as -1 or +0.5 stay numbers)."""
    text = str(value)
    if text.startswith(_FORMULA_STARTS):
        try:
            float(text)
        except ValueError:
            return "'" + text
    return text


def write_csv(f, rows):
    """Writes `rows` (lists of values) to the open text file `f` as CSV, every cell through `csv_cell`."""
    csv.writer(f).writerows([[csv_cell(v) for v in row] for row in rows])
