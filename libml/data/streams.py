"""The endless, seeded, resumable training streams: (element index, position, uint8 image, label) of a part.

Element i of a stream is a function of (seed, i); its position is the record's place in its `Part`
(0 <= position < len(part)), what per-image state of an algorithm is indexed by. A part of a file
that fits the memory budget is decoded once into a CPU variable (`EndlessStream.cached`; big parts
are read back from a disk cache at later starts: `libml.data.image_cache`); a larger one is read
from disk in the block-and-window order of `WindowLayout` (`EndlessStream.streamed`).
"""

import os

from libml import progress
from libml.data import image_cache
from libml.data.records import check_sizes, image_batches, pipeline_errors, record_decoder

import numpy as np
import tensorflow as tf


def available_memory_mb():
    """MiB the machine can give without swapping: MemAvailable of /proc/meminfo, else half the RAM."""
    try:
        with open('/proc/meminfo') as f:
            for line in f:
                if line.startswith('MemAvailable:'):
                    return int(line.split()[1]) >> 10
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') >> 21
    except (ValueError, OSError, AttributeError):
        return 2048


# Decoded training images are kept in memory up to half of what the machine has free (at import).
DEFAULT_CACHE_MB = max(256, available_memory_mb() // 2)
# Records shuffled together when a training file is streamed (not cached).
DEFAULT_SHUFFLE_BUFFER = 1 << 16


def cache_plan(labelled_count, unlabelled_count, shape, cache_mb):
    """{False: labelled, True: unlabelled} -> whether that training file's decoded images fit in memory.

    `cache_mb` MiB are shared, the labelled file first; `shape` (H, W, C) of uint8 images.
    """
    budget, image_bytes = cache_mb << 20, int(np.prod(shape))
    cached = {}
    for unlabelled, count in ((False, labelled_count), (True, unlabelled_count)):
        need = count * image_bytes
        cached[unlabelled] = need <= budget
        budget -= need if need <= budget else 0
    return cached


def hold(array):
    """A numpy array as a CPU `tf.Variable` the pipelines read without copying it into their graphs.

    (A tensor captured by a tf.data function is copied into the function's graph, which must
    stay under 2 GiB.) Build pipelines outside `strategy.scope()`: inside, the variable would
    be mirrored to every replica.
    """
    if tf.distribute.has_strategy():
        raise RuntimeError('build DataSet pipelines outside strategy.scope()')
    with tf.device('/cpu:0'):
        return tf.Variable(array, trainable=False)


def permuted(index, key, count):
    """index_shuffle of int64 `index` (< count) under the int64 [2] `key`."""
    return tf.random.experimental.index_shuffle(index, key, tf.constant(count - 1, tf.int64))


class Part:
    """Some records of one file (record numbers `records`, sorted), e.g. the labelled training ones."""

    def __init__(self, scan, records):
        self.scan, self.path = scan, scan.path
        self.records = np.asarray(records, np.int64)
        self.labels = scan.labels[self.records]
        self._mask = None

    def __len__(self):
        return len(self.records)

    def sequential(self):
        """tf.data of the part's serialized records, in file order."""
        ds = tf.data.TFRecordDataset(self.path, buffer_size=1 << 20)
        if not len(self):
            return ds.take(0)
        first, last = int(self.records[0]), int(self.records[-1])
        if last - first + 1 == len(self):
            return ds.skip(first).take(len(self))
        if self._mask is None:
            mask = np.zeros(len(self.scan), bool)
            mask[self.records] = True
            self._mask = hold(mask)
        mask = self._mask

        def kept(index, record):
            return tf.gather(mask, index)

        def record_of(index, record):
            return record

        return ds.enumerate().filter(kept).map(record_of)  # not lambdas: AutoGraph cannot parse two on a line


class WindowLayout:
    """How a streamed (uncached) epoch of `count` records is ordered.

    The records are cut into blocks of `block` consecutive records (each read as one span of
    the file); epoch e serves its `full` whole blocks in a seeded permuted order, then the short
    block (if any); `per_window` consecutive blocks of that order form a window, and each window
    is served in a seeded permuted order. Element i of the stream is therefore a function of
    (seed, i), and resuming at i reads only the window holding it: at most `window` records.

    When the whole epoch fits in one window (count <= window) it is one window permuted with
    the same `index_shuffle(p, (seed, e))` as the in-memory cache, so cached and streamed
    pipelines give the same stream.
    """

    def __init__(self, count, window):
        self.count = count
        if count <= window:
            self.block, self.per_window = count, 1
        else:
            self.block = -(-window // 64)
            self.per_window = window // self.block
        self.full, short = divmod(count, self.block)
        self.blocks = self.full + (short > 0)
        self.windows = -(-self.blocks // self.per_window)
        self.window = self.block * self.per_window

    def locate(self, index):
        """Element `index` -> (global window number, position inside the window)."""
        epoch, position = divmod(index, self.count)
        return epoch * self.windows + position // self.window, position % self.window


# --------------------------------------------------------------------------- cached


def decoded(part, shape):
    """The images of `part`, decoded, in chunks (uint8 [n, H, W, C]); UserError at one that is not of `shape`."""
    for chunk, _, sizes in image_batches(part.sequential(), shape, 1024).as_numpy_iterator():
        check_sizes(sizes, shape, part.path)
        yield chunk


def decode_into_memory(part, shape):
    """(images uint8 Variable [N, H, W, C], labels Variable [N]) of `part`.

    Read from the part's valid disk cache (`libml.data.image_cache`) when there is one, else decoded, and
    the cache written for a part of image_cache.MIN_RECORDS records or more.
    """
    with tf.device('/cpu:0'):  # filled in place: one copy of the images, no 2 GiB graph limit
        images = hold(tf.raw_ops.Empty(shape=[len(part), *shape], dtype=tf.uint8))
    big = len(part) >= image_cache.MIN_RECORDS
    chunks, writer = None, None
    if big:
        cache = image_cache.cache_path(part.path, part.records, shape)
        head = image_cache.header(part.path, len(part), shape)
        chunks = image_cache.read(cache, head, len(part), shape)
        writer = image_cache.Writer(cache, head) if chunks is None else None
    if chunks is None:
        chunks = decoded(part, shape)
    done = 0
    name = os.path.basename(part.path)
    try:
        with pipeline_errors([part.path]), progress.bar(total=len(part), desc=name, unit='img', disable=not big) as bar:
            for chunk in chunks:
                images.scatter_update(tf.IndexedSlices(chunk, tf.range(done, done + len(chunk))))
                done += len(chunk)
                bar.update(len(chunk))
                if writer:
                    writer.write(chunk)
    finally:
        if writer:
            writer.close(complete=done == len(part))
    return images, hold(part.labels)


def cached_stream(images, labels, seed, start):
    """Infinite (i, j, images[j], labels[j]) from `start`; j = perm_e(i mod N), perm_e seeded by (seed, i // N)."""
    count = int(images.shape[0])
    seed = tf.constant(seed, tf.int64)

    def pick(i):
        j = permuted(i % count, tf.stack([seed, i // count]), count)
        return i, j, tf.gather(images, j), tf.gather(labels, j)

    return tf.data.Dataset.range(start, 1 << 62).map(pick, num_parallel_calls=tf.data.AUTOTUNE)


# --------------------------------------------------------------------------- streamed


def block_table(part, layout):
    """What reading `part`'s blocks needs: (table, records).

    table: 4 int64 Variables [blocks]: per block its first file record, how many file records it
    spans, their byte offset and byte length. records: the part's record numbers as a Variable
    [N], or None when they are consecutive (every record of a span belongs to the part).
    """
    firsts = part.records[np.arange(layout.blocks) * layout.block]
    lasts = part.records[np.minimum(np.arange(1, layout.blocks + 1) * layout.block, len(part)) - 1]
    offsets = part.scan.offsets
    table = [hold(a) for a in (firsts, lasts - firsts + 1, offsets[firsts], offsets[lasts + 1] - offsets[firsts])]
    contiguous = part.records[-1] - part.records[0] + 1 == len(part)
    return table, None if contiguous else hold(part.records)


def _block_reader(path, layout, table, records):
    """block number -> its serialized training records [<= layout.block], one read from its byte offset."""

    def read_block(block):
        first_record, count, offset, span = (tf.gather(t, block) for t in table)
        reader = tf.raw_ops.TFRecordDatasetV2(
            filenames=[path],
            compression_type='',
            buffer_size=tf.clip_by_value(span, 1, 1 << 20),
            byte_offsets=[offset],
        )
        reader = tf.data.experimental.from_variant(reader, tf.TensorSpec([], tf.string))
        raw = reader.take(count).batch(count).get_single_element()
        if records is None:
            return raw
        first = block * layout.block
        wanted = tf.gather(records, tf.range(first, tf.minimum(first + layout.block, layout.count)))
        return tf.gather(raw, wanted - first_record)

    return read_block


def _window_reader(layout, seed, read_block):
    """global window number -> (element indices, positions, serialized records) [L] of that window, in serving order."""

    def read_window(window):
        epoch, w = window // layout.windows, window % layout.windows
        key = tf.stack([seed, epoch])
        slots = tf.range(w * layout.per_window, tf.minimum((w + 1) * layout.per_window, layout.blocks))
        blocks = tf.where(slots < layout.full, permuted(tf.minimum(slots, layout.full - 1), key, layout.full), slots)
        raw = tf.data.Dataset.from_tensor_slices(blocks).map(read_block).ragged_batch(layout.per_window)
        raw = raw.get_single_element().flat_values
        firsts = blocks * layout.block
        positions = tf.ragged.range(firsts, tf.minimum(firsts + layout.block, layout.count)).flat_values
        n = tf.size(raw, tf.int64)
        if layout.windows > 1:
            key = tf.random.experimental.stateless_fold_in(key, w + 1)
        order = tf.random.experimental.index_shuffle(tf.range(n), key, n - 1)
        elements = epoch * layout.count + w * layout.window + tf.range(n)
        return elements, tf.gather(positions, order), tf.gather(raw, order)

    return read_window


def streamed_stream(part, layout, blocks, seed, start, decode):
    """Infinite (i, position, decoded record, label) of `part` read from disk in `layout`'s order, from element `start`.

    blocks: `block_table(part, layout)`; decode: serialized record -> (image, label).
    Resuming reads one window, whatever `start`.
    """
    read_block = _block_reader(part.path, layout, *blocks)
    read_window = _window_reader(layout, tf.constant(seed, tf.int64), read_block)
    first, skip = layout.locate(start)
    ds = tf.data.Dataset.range(first, 1 << 62).map(read_window).prefetch(1).unbatch().skip(skip)
    return ds.map(lambda i, j, raw: (i, j, *decode(raw)), num_parallel_calls=tf.data.AUTOTUNE)


class EndlessStream:
    """Infinite (element index, position, uint8 image [H, W, C], int64 label) of a training part, from element `start`.

    The part is decoded into memory or indexed by blocks once, on first use.
    """

    def __init__(self, part, shape):
        self.part, self.shape = part, shape
        self._memory = None
        self._blocks = {}

    def cached(self, seed, start):
        """The stream served from the part's decoded images (`cached_stream`)."""
        if self._memory is None:
            self._memory = decode_into_memory(self.part, self.shape)
        return cached_stream(*self._memory, seed, start)

    def streamed(self, shuffle_buffer, seed, start):
        """The stream read from disk in the `WindowLayout` of windows of `shuffle_buffer` records."""
        layout = WindowLayout(len(self.part), shuffle_buffer)
        if shuffle_buffer not in self._blocks:
            self._blocks[shuffle_buffer] = block_table(self.part, layout)
        decode = record_decoder(self.part.path, self.shape)
        return streamed_stream(self.part, layout, self._blocks[shuffle_buffer], seed, start, decode)
