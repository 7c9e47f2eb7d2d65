"""Decoded training images on disk: written once beside their record file, read back at later starts.

Decoding half a million 32x32 PNGs costs about 30 s of CPU at every start of a run that keeps its
unlabelled images in memory; reading them back from a file of raw pixels takes a second or two.
The cache of some records of `<file>.tfrecord` (a `streams.Part`) is `<file>.tfrecord.<key>.pixels`,
key = digest of the record numbers and the image shape: a header of HEADER bytes naming what it was
made from (the record file's size and modification time, the record count and image shape), then
the images, uint8 [N, H, W, C], in the part's order. A header that does not match the record file
as it is now (rewritten, e.g. with --overwrite) makes the cache stale: it is decoded and written
again. Only parts of MIN_RECORDS records or more are cached (smaller ones decode in a few seconds).
"""

import contextlib
import hashlib
import json
import os

from libml.errors import UserError
from libml.files import temporary_file

import numpy as np
from absl import logging

HEADER = 4096
MAGIC = b'realmix decoded images\n'
MIN_RECORDS = 1 << 16
CHUNK_BYTES = 1 << 26  # read back 64 MiB at a time


def cache_path(path, records, shape):
    """Where the decoded images of records `records` (int [N]) of record file `path`, of `shape`, are cached."""
    key = hashlib.sha256(np.asarray(records, np.int64).tobytes() + repr(tuple(shape)).encode()).hexdigest()[:12]
    return f'{path}.{key}.pixels'


def header(path, count, shape):
    """The HEADER bytes that start a valid cache of `count` images of `shape` from record file `path` as it is now."""
    stat = os.stat(path)
    about = {'source_size': stat.st_size, 'source_mtime_ns': stat.st_mtime_ns, 'count': count, 'shape': list(shape)}
    return (MAGIC + json.dumps(about, sort_keys=True).encode() + b'\n').ljust(HEADER, b'\0')


def read(cache, expected, count, shape):
    """Iterator over the cached images (uint8 chunks [n, H, W, C], in order); None when `cache` is missing or stale.

    expected: `header(...)` of the record file as it is now.
    """
    size = count * int(np.prod(shape))
    try:
        f = open(cache, 'rb')  # noqa: SIM115 (closed by the iterator)
    except OSError:
        return None
    if f.read(HEADER) != expected or os.fstat(f.fileno()).st_size != HEADER + size:
        f.close()
        return None
    return _chunks(f, count, shape)


def _chunks(f, count, shape):
    per_chunk = max(1, CHUNK_BYTES // int(np.prod(shape)))
    with f:
        for start in range(0, count, per_chunk):
            chunk = np.empty((min(per_chunk, count - start), *shape), np.uint8)
            if f.readinto(chunk) != chunk.nbytes:
                raise UserError(f'{f.name} was cut short while being read: remove it (it is a cache)')
            yield chunk


class Writer:
    """Writes a cache file chunk by chunk under a temporary name, renamed into place by `close(complete=True)`.

    Gives up quietly (one warning, no file left) when the folder cannot be written or the disk fills up:
    the run goes on, and later starts decode again.
    """

    def __init__(self, cache, head):
        self.cache, self._file = cache, None
        self._stack = contextlib.ExitStack()
        try:
            self._tmp = self._stack.enter_context(temporary_file(cache))
            self._file = self._stack.enter_context(open(self._tmp, 'wb'))  # noqa: SIM115 (closed by the stack)
            self._file.write(head)
        except (OSError, UserError) as e:
            self._give_up(e)

    def write(self, images):
        """Appends uint8 images [n, H, W, C]."""
        if self._file is None:
            return
        try:
            self._file.write(np.ascontiguousarray(images).data)
        except OSError as e:
            self._give_up(e)

    def close(self, complete):
        """Puts the file in place when `complete` (every image written), else removes it."""
        try:
            if self._file is not None and complete:
                self._file.close()
                os.replace(self._tmp, self.cache)
        except OSError as e:
            self._give_up(e)
        self._stack.close()

    def _give_up(self, error):
        reason = getattr(error, 'strerror', None) or str(error)
        logging.warning('decoded images not cached in %s (%s): later starts decode them again', self.cache, reason)
        self._file = None
        self._stack.close()
