"""Augmented copies (make_aug_copy.py): K augmented copies of every training-unlabelled image, streamed in chunks.

The augmented copy of N training-unlabelled images, K copies each, is the stream of elements
e = 0 .. K*N - 1 (element e = copy e // N of image e % N, augmented with the stateless seed
(seed, e)), shuffled by tf.data's seeded shuffle buffer. The stream is cut into chunks of
consecutive output positions; a chunk is a pure function of its element indices, so chunks can
be made by any number of threads and the file is the same byte for byte. The source images are
decoded once into a scratch file of raw pixels, read back by index; the PNGs are encoded by
`encode_pngs` (the same bytes as tf.io.encode_png, faster), the records built by
`example_bytes` (protobuf's deterministic serialization, faster).
"""

import collections
import concurrent.futures
import os

from libml.data import augment as augment_lib
from libml.data.record_encoder import encode_pngs, example_bytes
from libml.data.records import image_batches
from libml.errors import UserError

import numpy as np
import tensorflow as tf


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

    Image j is augmented by `augment` (libml.data.augment) with the stateless seed (seed, elements[j]),
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
