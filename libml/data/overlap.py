"""Training images that repeat test images: found by a fingerprint of their decoded pixels.

A split made from the test file, or a training folder that shares images with the test folder,
trains on test images and inflates the test accuracy. Two records repeat each other when their
decoded images are equal (same pixels, same shape), however their PNG bytes were encoded.
"""

from libml.data.records import file_error
from libml.errors import UserError

import numpy as np
import tensorflow as tf


def pixel_hashes(path):
    """uint64 [N]: a 64-bit fingerprint of each record's decoded image (pixels and shape), in file order."""
    spec = {'image': tf.io.FixedLenFeature([], tf.string)}

    def serialized(raw):
        return tf.io.serialize_tensor(tf.io.decode_png(tf.io.parse_single_example(raw, spec)['image']))

    def fingerprints(images):
        return tf.bitcast(tf.fingerprint(images), tf.uint64)

    ds = tf.data.TFRecordDataset(path, buffer_size=1 << 20).map(serialized, num_parallel_calls=tf.data.AUTOTUNE)
    try:
        chunks = list(ds.batch(1024).map(fingerprints).as_numpy_iterator())
    except tf.errors.OpError as e:
        raise UserError(file_error(path, e)) from None
    return np.concatenate(chunks) if chunks else np.zeros([0], np.uint64)


def repeats_of_test(parts):
    """{part: [repeating, total]} for the labelled, validation and unlabelled `parts` (`DataSet.parts()`).

    `repeating` counts the part's records whose image equals one of the test part's images.
    """
    hashes = {}

    def of(part):
        if part.path not in hashes:
            hashes[part.path] = pixel_hashes(part.path)
        return hashes[part.path][part.records]

    test = of(parts['test'])
    return {
        name: [int(np.isin(of(part), test).sum()), len(part)]
        for name, part in parts.items()
        if name != 'test' and part is not None
    }


def repeats_warning(repeats, test_file):
    """The one-line warning for `repeats_of_test` counts, or None when no image repeats a test image."""
    found = [f'{n} of the {total} {name}' for name, (n, total) in repeats.items() if n]
    if not found:
        return None
    return (
        f'warning: {", ".join(found)} images repeat test images of {test_file} (same pixels): the test '
        'accuracy then counts images the model trained or was selected on; make the split from the training '
        'file, or remove the repeated images'
    )
