"""The logic behind create_split.py, make_aug_copy.py and filter_dataset.py.

Index arithmetic is pure numpy so it can be tested without files; the augmented copy is made
chunk by chunk (see the make_aug_copy section) and never holds more than a few chunks in memory.
"""

import collections
import concurrent.futures
import functools
import json
import os
import re
import struct
import zlib

from libml import augment as augment_lib
from libml import data
from libml.records import image_batches
from libml.utils import UserError, parse_int_list

import numpy as np
import tensorflow as tf

_STEM_RE = re.compile(r'^[A-Za-z0-9_]+$')
_SPLIT_FILE_RE = re.compile(r'^(?P<stem>(?P<name>[A-Za-z0-9_]+)\.\d+@\d+)-(?P<part>label|unlabel)\.tfrecord$')
_PLAIN_FILE_RE = re.compile(r'^(?P<name>[A-Za-z0-9_]+)-(?P<part>[A-Za-z]+)\.tfrecord$')


# --------------------------------------------------------------------------- create_split


def check_stem(prefix):
    """UserError unless the last component of `prefix` is a valid dataset name."""
    stem = os.path.basename(prefix)
    if not _STEM_RE.match(stem):
        raise UserError(
            f'output prefix {prefix!r}: its last part {stem!r} must be a dataset name '
            'of letters, digits and _ only (e.g. $ML_DATA/SSL/cifar10)'
        )
    return stem


def class_quotas(available, size):
    """How many records each class gives to a balanced split of `size`.

    available: {class: number of labelled records in the pool}. Every class gets
    size // K; the size % K remaining go one each to the classes with the most records
    (ties: lower class id). Returns {class: quota}; UserError when a class has too few.
    """
    classes = sorted(available)
    total = sum(available.values())
    if size > total:
        raise UserError(
            f'--label_split_size={size} exceeds the {total} labelled records in the pool: '
            'lower it, or raise --label_size'
        )
    base, extra = divmod(size, len(classes))
    quotas = dict.fromkeys(classes, base)
    for c in sorted(classes, key=lambda c: (-available[c], c))[:extra]:
        quotas[c] += 1
    for c in classes:
        if quotas[c] > available[c]:
            raise UserError(
                f'class {c} has only {available[c]} labelled records in the pool but a '
                f'balanced split of {size} over {len(classes)} classes needs {quotas[c]}: '
                'lower --label_split_size'
            )
    return quotas


def round_robin(groups):
    """Interleaves index arrays: g0[0], g1[0], ..., g0[1], g1[1], ... (exhausted groups skipped)."""
    groups = [np.asarray(g, np.int64) for g in groups]
    if not groups or not sum(len(g) for g in groups):
        return np.zeros([0], np.int64)
    indices = np.concatenate(groups)
    rank = np.concatenate([np.arange(len(g)) for g in groups])
    group = np.concatenate([np.full(len(g), i) for i, g in enumerate(groups)])
    return indices[np.lexsort((group, rank))]


def make_split(labels, size, seed, label_size=None):
    """Chooses a class-balanced labelled split.

    labels: int array, the label of every input record in file order (-1 = unlabelled).
    The pool is the labelled records among the first `label_size` (all when None). Seed 0
    keeps file order; any other seed shuffles. Returns a dict with `label` (source indices
    of the picked records, in output order), `unlabel` (held-out pool records, classes
    interleaved, then every other record in file order), `valid_capacity` (held-out count)
    and `quotas` ({class: picked}).
    """
    labels = np.asarray(labels, np.int64)
    if not len(labels):
        raise UserError('the input files hold no records')
    if size <= 0:
        raise UserError(f'--label_split_size={size}: must be positive')
    head = len(labels) if label_size is None else label_size
    if not 0 < head <= len(labels):
        raise UserError(
            f'--label_size={label_size}: must be between 1 and the {len(labels)} records of the input files'
        )
    pool = np.flatnonzero(labels[:head] >= 0)
    classes = np.unique(labels[labels >= 0])
    if not len(classes):
        raise UserError('the input files hold no labelled records (every label is -1)')
    rng = np.random.RandomState(seed) if seed else None
    by_class = {}
    for c in classes:
        members = pool[labels[pool] == c]
        by_class[int(c)] = rng.permutation(members) if rng else members
    quotas = class_quotas({c: len(m) for c, m in by_class.items()}, size)
    picked = np.concatenate([m[: quotas[c]] for c, m in by_class.items()])
    picked = rng.permutation(picked) if rng else np.sort(picked)
    held = round_robin([m[quotas[c] :] for c, m in by_class.items()])
    outside = np.ones(len(labels), bool)
    outside[pool] = False
    unlabel = np.concatenate([held, np.flatnonzero(outside)])
    return {'label': picked, 'unlabel': unlabel, 'valid_capacity': len(held), 'quotas': quotas}


class RecordFile:
    """Random access to the raw records of TFRecord files, numbered across the files in order.

    Reads each file's framing once (record offsets and lengths, 16 bytes a record in memory);
    `read(i)` then returns record i's serialized bytes, as stored. No CRC check: read the file
    once with TensorFlow (e.g. data.read_labels) to verify it.
    """

    def __init__(self, paths):
        self._files, offsets, lengths, owners = [], [], [], []
        for number, path in enumerate(paths):
            data.check_record_file(path)
            size = os.path.getsize(path)
            self._files.append(open(path, 'rb'))  # noqa: SIM115 (closed by close())
            f, position = self._files[-1], 0
            while position < size:
                f.seek(position)
                header = f.read(12)
                length = struct.unpack('<Q', header[:8])[0] if len(header) == 12 else size
                if position + 16 + length > size:
                    self.close()
                    raise UserError(
                        f'{path} is truncated or not a record file (record {len(offsets)} runs past '
                        'its end): re-create it'
                    )
                offsets.append(position + 12)
                lengths.append(length)
                owners.append(number)
                position += 16 + length
        self.offsets, self.lengths = np.array(offsets, np.int64), np.array(lengths, np.int64)
        self._owners = np.array(owners, np.int32)

    def __len__(self):
        return len(self.offsets)

    def read(self, index):
        """The serialized bytes of record `index`."""
        fd = self._files[self._owners[index]].fileno()
        return os.pread(fd, int(self.lengths[index]), int(self.offsets[index]))

    def close(self):
        for f in self._files:
            f.close()


def class_counts(labels):
    """{"<class>": count} over an int array (keys as strings, -1 included), for map files."""
    values, counts = np.unique(np.asarray(labels, np.int64), return_counts=True)
    return {str(int(v)): int(n) for v, n in zip(values, counts)}


# --------------------------------------------------------------------------- make_aug_copy
# The augmented copy of N training-unlabelled images, K copies each, is the stream of elements
# e = 0 .. K*N - 1 (element e = copy e // N of image e % N, augmented with the stateless seed
# (seed, e)), shuffled by tf.data's seeded shuffle buffer. The stream is cut into chunks of
# consecutive output positions; a chunk is a pure function of its element indices, so chunks can
# be made by any number of threads and the file is the same byte for byte. The source images are
# decoded once into a scratch file of raw pixels, read back by index; the PNGs are encoded by
# `encode_pngs` (the same bytes as tf.io.encode_png, faster), the records built by
# `example_bytes` (protobuf's deterministic serialization, faster).


def copy_order(total, buffer, seed, chunk):
    """Iterator over int64 arrays of (at most) `chunk` element indices: 0..total-1 in shuffled order.

    The order is tf.data's `shuffle(buffer, seed=seed)` of the stream 0, 1, ..., total - 1, in a
    process with no global seed (`tf.random.set_seed`), as in make_aug_copy.py.
    """
    return tf.data.Dataset.range(total).shuffle(buffer, seed=seed).batch(chunk).as_numpy_iterator()


def chunk_size(shape):
    """Images per chunk of work for images of `shape`: about 2 MB of pixels, 16 to 512 images."""
    return int(np.clip((1 << 21) // int(np.prod(shape)), 16, 512))


class PixelFile:
    """Decoded uint8 images [H, W, C], stored one after the other in a file, read back by index.

    Holds an open file, not the images: `gather` reads just the images it is asked for.
    """

    def __init__(self, path, shape, count):
        self.path, self.shape, self.count = path, tuple(int(v) for v in shape), count
        self.size = int(np.prod(self.shape))
        self._fd = os.open(path, os.O_RDONLY)

    @classmethod
    def decode(cls, path, source, skip, count, shape):
        """Decodes records skip..skip+count-1 of record file `source` into the new file `path`.

        Returns (PixelFile, labels int64 [count]). UserError naming `source` when a record is
        missing, unreadable or not an image of `shape`.
        """
        shape = tuple(int(v) for v in shape)
        records = tf.data.TFRecordDataset(source, buffer_size=1 << 20).skip(skip).take(count)
        labels, done = [], 0
        try:
            with open(path, 'wb') as f:
                for images, batch_labels, sizes in image_batches(records, shape, 256).as_numpy_iterator():
                    fits = np.all(sizes == shape[:2], axis=1)
                    if not fits.all():
                        bad = skip + done + int(np.argmin(fits))
                        raise UserError(
                            f'{source}: record {bad} is not a {"x".join(map(str, shape))} image like '
                            'the first one: every image of a dataset must have the same shape'
                        )
                    f.write(images.tobytes())
                    labels.append(batch_labels)
                    done += len(images)
        except tf.errors.OpError as e:
            raise UserError(f'{source} is not a readable dataset file ({e.message.splitlines()[0]})') from None
        if done != count:
            raise UserError(f'{source} holds {skip + done} records, fewer than the {skip + count} expected')
        return cls(path, shape, count), np.concatenate(labels) if labels else np.zeros([0], np.int64)

    def gather(self, indices):
        """uint8 [len(indices), H, W, C]: the images at `indices` (thread-safe)."""
        out = np.empty((len(indices),) + self.shape, np.uint8)
        rows = out.reshape(len(indices), self.size)
        for row, i in zip(rows, np.asarray(indices, np.int64).tolist()):
            if os.preadv(self._fd, [row], i * self.size) != self.size:
                raise UserError(f'{self.path}: scratch file truncated (another process changed it?)')
        return out

    def close(self):
        os.close(self._fd)


def make_augmenter(augment, seed, shape):
    """A compiled function (uint8 images [n, H, W, C], int64 elements [n]) -> uint8 augmented images.

    Image j is augmented by `augment` (libml.augment) with the stateless seed (seed, elements[j]),
    in [0, 1] floats, then rounded back to uint8 (saturated).
    """
    augment_fn = augment_lib.get(augment)
    shape = tuple(int(v) for v in shape)

    def one(args):
        image, element = args
        image = tf.image.convert_image_dtype(image, tf.float32)
        image = augment_fn(image, tf.stack([tf.constant(seed, tf.int64), element]))
        return tf.image.convert_image_dtype(image, tf.uint8, saturate=True)

    @tf.function(input_signature=[tf.TensorSpec((None,) + shape, tf.uint8), tf.TensorSpec([None], tf.int64)])
    def run(images, elements):
        return tf.map_fn(one, (images, elements), fn_output_signature=tf.uint8, parallel_iterations=16)

    return run


def png_filter_rows(images):
    """The scanlines libpng writes for uint8 images [B, H, W, C]: uint8 [B, H, 1 + W*C].

    Each row starts with its filter type (0 none, 1 sub, 2 up, 3 average, 4 Paeth) followed by the
    filtered bytes; the type is libpng's default choice: the smallest sum of |filtered byte| read
    as a signed byte, the first type on ties (the first row sees a row of zeros above).
    """
    b, h, w, c = images.shape
    n = w * c
    x = images.reshape(b, h, n)
    left, up, up_left = np.zeros_like(x), np.zeros_like(x), np.zeros_like(x)
    left[:, :, c:] = x[:, :, :-c]
    up[:, 1:] = x[:, :-1]
    up_left[:, 1:, c:] = x[:, :-1, :-c]
    candidates = np.empty((5, b, h, n), np.uint8)  # uint8 arithmetic wraps modulo 256, as PNG wants
    candidates[0] = x
    np.subtract(x, left, out=candidates[1])
    np.subtract(x, up, out=candidates[2])
    np.subtract(x, (left >> 1) + (up >> 1) + (left & up & 1), out=candidates[3])
    above, beside = up.astype(np.int16) - up_left, left.astype(np.int16) - up_left
    pa, pb, pc = np.abs(above), np.abs(beside), np.abs(above + beside)  # Paeth's distances to left, up, up-left
    use_left = (pa <= pb) & (pa <= pc)
    use_up = (pb <= pc) & ~use_left  # else up-left; the prediction by masks is faster than nested np.where
    paeth = up_left + use_left.view(np.uint8) * (left - up_left) + use_up.view(np.uint8) * (up - up_left)
    np.subtract(x, paeth, out=candidates[4])
    cost = np.abs(candidates.view(np.int8)).view(np.uint8).sum(-1, dtype=np.int32)
    best = cost.argmin(0).reshape(-1)
    rows = np.empty((b * h, n + 1), np.uint8)
    rows[:, 0] = best
    rows[:, 1:] = candidates.reshape(5, b * h, n)[best, np.arange(b * h)]
    return rows.reshape(b, h, n + 1)


def _png_chunk(kind, payload):
    return struct.pack('>I', len(payload)) + kind + payload + struct.pack('>I', zlib.crc32(payload, zlib.crc32(kind)))


def _png_zlib(raw):
    """zlib stream of the filtered scanlines `raw` as libpng makes it (level 6, Z_FILTERED, memLevel 9).

    libpng shrinks the window of small images and then rewrites the header for the smallest
    window that covers the data (its optimize_cmf).
    """
    bits, half = 15, 1 << 14
    if len(raw) <= 16384:
        while len(raw) + 262 <= half:
            half, bits = half >> 1, bits - 1
    compressor = zlib.compressobj(6, zlib.DEFLATED, bits, 9, zlib.Z_FILTERED)
    stream = compressor.compress(raw) + compressor.flush()
    cinfo = stream[0] >> 4
    half = 1 << (cinfo + 7)
    if len(raw) > 16384 or len(raw) > half:
        return stream
    while True:
        half, cinfo = half >> 1, cinfo - 1
        if cinfo == 0 or len(raw) > half:
            break
    cmf = (stream[0] & 0x0F) | (cinfo << 4)
    flags = stream[1] & 0xE0
    flags += 0x1F - ((cmf << 8) + flags) % 0x1F
    return bytes([cmf, flags]) + stream[2:]


_PNG_COLOR_TYPE = {1: 0, 2: 4, 3: 2, 4: 6}  # grey, grey + alpha, RGB, RGBA


def encode_pngs(images):
    """uint8 images [B, H, W, C] (C in 1..4) -> B PNG files (bytes), 8 bits per sample.

    Byte for byte what tf.io.encode_png writes (libpng's defaults, checked by the tests, given
    Python's zlib and TensorFlow's are the stock zlib), faster; zlib runs without the interpreter
    lock, so threads encode in parallel.
    """
    b, h, w, c = images.shape
    header = b'\x89PNG\r\n\x1a\n' + _png_chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, 8, _PNG_COLOR_TYPE[c], 0, 0, 0))
    end = _png_chunk(b'IEND', b'')
    out = []
    for start in range(0, b, 32):  # small blocks keep the filter's temporaries in cache
        for rows in png_filter_rows(images[start : start + 32]):
            stream = _png_zlib(rows.tobytes())
            idat = b''.join(_png_chunk(b'IDAT', stream[i : i + 8192]) for i in range(0, len(stream), 8192))
            out.append(header + idat + end)
    return out


def _varint(value):
    """Protocol-buffer varint of an int64 (negative numbers take 10 bytes, two's complement)."""
    value &= (1 << 64) - 1
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _header(number, size):
    """Tag and length of a length-delimited protocol-buffer field `number` of `size` payload bytes."""
    return _varint(number << 3 | 2) + _varint(size)


def _field(number, payload):
    """A length-delimited protocol-buffer field."""
    return _header(number, len(payload)) + payload


_IMAGE_KEY, _LABEL_KEY = _field(1, b'image'), _field(1, b'label')


@functools.cache
def _label_entry(label):
    """The `label` entry of Features.feature: Feature.int64_list.value, packed."""
    return _field(1, _LABEL_KEY + _field(2, _field(3, _field(1, _varint(label)))))


@functools.lru_cache(maxsize=1 << 16)
def _example_head(size, tail):
    """The bytes of an Example before its PNG of `size` bytes, when its label entry takes `tail` bytes."""
    head = b''
    for number in (1, 1, 2):  # BytesList.value, Feature.bytes_list, the entry's value
        head = _header(number, len(head) + size) + head
    head = _header(1, len(_IMAGE_KEY) + len(head) + size) + _IMAGE_KEY + head  # Features.feature entry
    return _header(1, len(head) + size + tail) + head  # Example.features


def example_bytes(png, label):
    """The serialized tf.train.Example of one record (PNG bytes, int label), built directly (~30x faster).

    The bytes of protobuf's SerializeToString(deterministic=True): features sorted by name, `image`
    then `label`. (Without deterministic=True, as data.serialize_example calls it, the order of the
    two features varies from one process to the next, so files differ byte-wise between runs.)
    Only the PNG is copied: the bytes around it are looked up by its size and the label.
    """
    tail = _label_entry(int(label))
    return _example_head(len(png), len(tail)) + png + tail


def augmented_records(pixels, labels, copies, augment, seed, buffer=10000, workers=1, chunk=None):
    """Yields the augmented copy's records in file order, as lists of serialized Examples (one per chunk).

    pixels: PixelFile of the N training-unlabelled images; labels: their int64 labels [N].
    Element e is copy e // N of image e % N, augmented with the seed (seed, e); the elements are
    shuffled by `copy_order(copies * N, buffer, seed)`. `workers` threads make the chunks (of
    `chunk` images; default chunk_size); the result does not depend on either.
    """
    count = pixels.count
    augmenter = make_augmenter(augment, seed, pixels.shape)
    labels = np.asarray(labels, np.int64)

    def make(elements):
        images = augmenter(pixels.gather(elements % count), elements).numpy()
        return [example_bytes(png, label) for png, label in zip(encode_pngs(images), labels[elements % count])]

    order = copy_order(copies * count, buffer, seed, chunk or chunk_size(pixels.shape))
    if workers <= 1:
        for elements in order:
            yield make(elements)
        return
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        pending = collections.deque()
        try:
            for elements in order:
                pending.append(pool.submit(make, elements))
                if len(pending) >= 2 * workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


def choose_valid_size(valid_capacity, valid_size=None):
    """Held-out records an augmented copy carries over un-augmented for validation (default: all)."""
    if valid_size is None:
        return valid_capacity
    if not 0 <= valid_size <= valid_capacity:
        raise UserError(
            f'--valid_size={valid_size}: must be between 0 and the {valid_capacity} '
            'held-out labelled records at the head of the unlabel file'
        )
    return valid_size


# --------------------------------------------------------------------------- filter_dataset


def parse_filter_lists(class_filter, label_order=None):
    """--class_filter and --label_order texts -> (list of ints, list or None), checked."""
    values = {
        'class_filter': parse_int_list(class_filter, 'class_filter'),
        'label_order': parse_int_list(label_order, 'label_order') if label_order else None,
    }
    for flag, classes in values.items():
        text = class_filter if flag == 'class_filter' else label_order
        if classes and len(set(classes)) != len(classes):
            raise UserError(f'--{flag}={text} lists a class twice')
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


def write_map(path, content):
    """Writes a map json with one key per line (index lists stay on one line each)."""
    lines = [f'  {json.dumps(key)}: {json.dumps(value, sort_keys=True)}' for key, value in content.items()]
    with open(path, 'w') as f:
        f.write('{\n' + ',\n'.join(lines) + '\n}\n')
