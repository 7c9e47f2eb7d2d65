"""DataSet pipelines and dataset names, on tiny 16x16 grayscale record files built in-process."""

import hashlib
import json
import os
import pathlib

from libml.data import names as datanames
from libml.data import splits
from libml.data.dataset import DataSet, balanced_holdout, outlier_status
from libml.data.records import encode_png, write_records
from libml.data.streams import DEFAULT_SHUFFLE_BUFFER
from libml.errors import UserError

import numpy as np
import pytest
from conftest import MISMATCH_DATASET

SIDE = 16
NCLASS = 10


def image_for(index):
    """A 16x16x1 image whose dominant grey level encodes `index` (< 254), with a white 3x3 mark.

    Grey 127 (cutout fill) and 255 (the mark) are skipped, so shifts and cutout keep the code.
    """
    image = np.full((SIDE, SIDE, 1), index + (index >= 127), np.uint8)
    image[6:9, 6:9] = 255
    return image


def index_of(image):
    """Inverse of `image_for` for a uint8 image or a model-range ([-1, 1]) float image."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        image = np.round((image + 1) / 2 * 255).astype(np.int64)
    value = int(np.argmax(np.bincount(image.ravel(), minlength=256)[:255]))
    return value - (value > 127)


def build_dataset(root, name='tiny', n_train=200, n_unlabelled=0, n_test=40, size=50, seed=1, label_size=None):
    """Writes <name>-train/test.tfrecord and the split <name>.<seed>@<size> under `root`.

    Train record i has image_for(i) and label i % 10, the last `n_unlabelled` label -1.
    Returns the splits.make_split result (source indices of the label and unlabel files).
    """
    labels = np.array([i % NCLASS for i in range(n_train)])
    labels[n_train - n_unlabelled :] = -1
    records = [(encode_png(image_for(i)), labels[i]) for i in range(n_train)]
    write_records(datanames.train_path(name, root), records)
    write_records(datanames.test_path(name, root), [(encode_png(image_for(i)), i % NCLASS) for i in range(n_test)])
    split = splits.make_split(labels, size, seed, label_size)
    label_file, unlabel_file, map_file = datanames.split_paths(f'{name}.{seed}@{size}', root)
    write_records(label_file, [records[i] for i in split['label']])
    write_records(unlabel_file, [records[i] for i in split['unlabel']])
    os.makedirs(os.path.dirname(map_file), exist_ok=True)
    splits.write_map(
        map_file,
        {
            'valid_capacity': split['valid_capacity'],
            'label_size': label_size,
            'label': split['label'].tolist(),
            'unlabel': split['unlabel'].tolist(),
        },
    )
    return split


def take_images(ds, count):
    """First `count` images (and labels, if any) of a batched pipeline, unbatched, as numpy."""
    images, labels, seen = [], [], 0
    for batch in ds:
        x = batch[0] if isinstance(batch, tuple) else batch
        images.append(x.numpy())
        if isinstance(batch, tuple):
            labels.append(batch[1].numpy())
        seen += len(images[-1])
        if seen >= count:
            break
    return np.concatenate(images)[:count], (np.concatenate(labels)[:count] if labels else None)


# --------------------------------------------------------------------------- names


def test_index_code_round_trip():
    for i in (0, 126, 127, 128, 200, 253):
        assert index_of(image_for(i)) == i
        assert index_of(image_for(i).astype(np.float32) / 127.5 - 1) == i


# --------------------------------------------------------------------------- DataSet


def test_attributes_come_from_the_data(tiny, ml_data):
    ds = DataSet.from_name('tiny.1@50-100')
    assert ds.shape == (SIDE, SIDE, 1)
    assert ds.nclass == NCLASS
    assert ds.class_names == [str(i) for i in range(NCLASS)]
    assert sorted(ds.train_labels.tolist()) == sorted([i % NCLASS for i in tiny['label']])
    assert ds.unlabel_count == 170 - 100
    DataSet.from_name('tiny.1@50-100', nclass=NCLASS, img_size=SIDE)


def test_class_mapping_sets_names_but_not_nclass(tiny, ml_data):
    path = datanames.class_mapping_path('tiny', str(ml_data))
    pathlib.Path(path).write_text(json.dumps({str(i): f'c{i}' for i in range(NCLASS)}))
    ds = DataSet.from_name('tiny.1@50-10')
    assert ds.nclass == NCLASS
    assert ds.class_names[:2] == ['c0', 'c1']
    pathlib.Path(path).write_text(json.dumps({str(i): f'c{i}' for i in range(12)}))  # stale: 12 names
    with pytest.raises(UserError, match=f'class mapping {path} names 12 classes .* the data has {NCLASS}'):
        DataSet.from_name('tiny.1@50-10')


@pytest.mark.parametrize('kwargs, message', [({'nclass': 7}, '--nclass=7'), ({'img_size': 32}, '--img_size=32')])
def test_flag_disagreeing_with_data(tiny, kwargs, message):
    with pytest.raises(UserError, match=message):
        DataSet.from_name('tiny.1@50-10', **kwargs)


def test_validation_beyond_held_out_records_is_refused(ml_data):
    build_dataset(str(ml_data), n_train=120, n_unlabelled=40, size=50, label_size=80)
    DataSet.from_name('tiny.1@50-30')
    with pytest.raises(UserError, match='validation size 31 exceeds the 30 held-out'):
        DataSet.from_name('tiny.1@50-31')


def test_missing_split_is_a_user_error(ml_data):
    with pytest.raises(UserError, match='not found'):
        DataSet.from_name('nothing.1@50-10')


def test_valid_set_is_exactly_the_held_out_head(tiny):
    ds = DataSet.from_name('tiny.1@50-25')
    images, labels = take_images(ds.eval_valid(8), 1000)
    assert [index_of(x) for x in images] == tiny['unlabel'][:25].tolist()
    assert labels.tolist() == [i % NCLASS for i in tiny['unlabel'][:25]]
    assert DataSet.from_name('tiny.1@50-0').eval_valid(8) is None


def test_train_labelled_batches(ml_data):
    build_dataset(str(ml_data), n_train=100, n_unlabelled=30)
    root = str(ml_data)
    # the whole train file as labelled file: its 30 unlabelled records must never be served
    ds = DataSet(
        'tiny-0',
        label_file=datanames.train_path('tiny', root),
        test_file=datanames.test_path('tiny', root),
        augment='svhn',
    )
    assert len(ds.train_labels) == 70
    images, labels = take_images(ds.train_labelled(10, seed=1), 140)
    assert images.shape == (140, SIDE, SIDE, 1) and images.dtype == np.float32
    assert images.min() >= -1 and images.max() <= 1 and images.min() < 0 < images.max()
    assert labels.min() >= 0
    indices = [index_of(x) for x in images]
    assert [i % NCLASS for i in indices] == labels.tolist()
    # each epoch serves every labelled image exactly once
    assert sorted(indices[:70]) == sorted(indices[70:]) == list(range(70))
    assert indices[:70] != indices[70:]


def test_train_unlabelled_views(tiny):
    ds = DataSet.from_name('tiny.1@50-100', augment='svhn')
    batch, labels, indices = (t.numpy() for t in next(iter(ds.train_unlabelled(8, ('weak', 'weak'), seed=5))))
    assert batch.shape == (8, 2, SIDE, SIDE, 1) and labels.shape == indices.shape == (8,) and labels.dtype == np.int64
    assert all(index_of(v[0]) == index_of(v[1]) for v in batch)
    assert sum(not np.array_equal(v[0], v[1]) for v in batch) >= 6
    assert {index_of(v[0]) for v in batch} <= set(tiny['unlabel'][100:].tolist())
    # the records' labels: i % 10, or -1 for the 20 unlabelled source records (indices >= 200)
    assert labels.tolist() == [index_of(v[0]) % NCLASS if index_of(v[0]) < 200 else -1 for v in batch]


@pytest.mark.parametrize('cache_mb, shuffle_buffer', [(None, DEFAULT_SHUFFLE_BUFFER), (0, 65)])
def test_unlabelled_batches_carry_each_image_index_in_the_unlabel_file(tiny, cache_mb, shuffle_buffer):
    # 170 unlabel records, the first 100 held out (validation): 70 training ones. shuffle_buffer=65
    # streams them in 2 windows of 32 blocks of 2 records.
    ds = DataSet.from_name('tiny.1@50-100', augment='svhn', cache_mb=cache_mb, shuffle_buffer=shuffle_buffer)
    assert ds.cached[True] == (cache_mb is None) and ds.unlabel_count == 70
    images, indices = [], []
    for batch_images, _, batch_indices in ds.train_unlabelled(10, ('weak',), seed=5, start=30).take(14):
        images.append(batch_images.numpy()[:, 0])
        indices.append(batch_indices.numpy())
    images, indices = np.concatenate(images), np.concatenate(indices)
    assert indices.dtype == np.int64
    # index j is record 100 + j of the unlabel file, whose image is image_for(tiny['unlabel'][100 + j])
    assert [index_of(x) for x in images] == tiny['unlabel'][100 + indices].tolist()
    assert sorted(indices[40:110]) == list(range(70))  # from image 30 of 140: the second epoch, whole


def test_pipelines_are_reproducible_and_resumable(tiny):
    ds = DataSet.from_name('tiny.1@50-100', augment='cutout')
    first, first_labels = take_images(ds.train_labelled(8, seed=3), 80)
    again, _ = take_images(ds.train_labelled(8, seed=3), 80)
    other, _ = take_images(ds.train_labelled(8, seed=4), 80)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    # 56 images = one 50-image epoch + 6: resuming there continues the uninterrupted stream
    resumed, resumed_labels = take_images(ds.train_labelled(8, seed=3, start=56), 24)
    np.testing.assert_array_equal(resumed, first[56:80])
    np.testing.assert_array_equal(resumed_labels, first_labels[56:80])

    stream, _ = take_images(ds.train_unlabelled(4, ('weak', 'weak'), seed=3), 100)
    resumed, _ = take_images(ds.train_unlabelled(4, ('weak', 'weak'), seed=3, start=76), 24)
    np.testing.assert_array_equal(resumed, stream[76:100])


def test_eval_pipelines_are_unaugmented_and_labelled(tiny):
    ds = DataSet.from_name('tiny.1@50-10', augment='cutout')
    images, labels = take_images(ds.eval_labelled(16), 1000)
    assert [index_of(x) for x in images] == tiny['label'].tolist()
    np.testing.assert_allclose(images[0], image_for(tiny['label'][0]) / 127.5 - 1, atol=1e-6)
    images, labels = take_images(ds.eval_test(16), 1000)
    assert labels.tolist() == [i % NCLASS for i in range(40)]


def test_resume_when_images_exceed_the_memory_cache(tiny):
    ds = DataSet.from_name('tiny.1@50-100', augment='svhn', cache_mb=0)
    stream, labels = take_images(ds.train_labelled(8, seed=2), 72)
    resumed, resumed_labels = take_images(ds.train_labelled(8, seed=2, start=48), 24)
    np.testing.assert_array_equal(resumed, stream[48:72])
    np.testing.assert_array_equal(resumed_labels, labels[48:72])


# Today's (commit 8be6db4) streams of tiny.1@50-100 with augment='cifar10': 24 images from image
# `start`, their source indices and the sha256 (16 hex) of their float32 bytes. The cached
# pipelines must keep producing exactly these.
GOLDEN = {
    ('unlabelled', 0): (
        '34134af2272a83e1',
        [
            82,
            133,
            123,
            205,
            202,
            141,
            111,
            126,
            65,
            206,
            200,
            209,
            21,
            27,
            218,
            18,
            208,
            54,
            166,
            219,
            163,
            168,
            5,
            139,
        ],
    ),
    ('unlabelled', 93): (
        '32817ab9d9a0cd2b',
        [
            120,
            80,
            74,
            82,
            213,
            64,
            168,
            141,
            172,
            162,
            202,
            201,
            136,
            216,
            27,
            206,
            200,
            5,
            127,
            113,
            204,
            35,
            212,
            119,
        ],
    ),
    ('labelled', 0): (
        '788d002007cc2f74',
        [175, 144, 88, 174, 186, 122, 177, 47, 148, 143, 14, 125, 9, 19, 197, 57, 60, 118, 81, 182, 164, 161, 20, 22],
    ),
    ('labelled', 93): (
        '4e18b97946cc612c',
        [56, 183, 160, 122, 22, 14, 115, 96, 63, 14, 19, 143, 31, 174, 151, 191, 148, 42, 15, 161, 197, 156, 57, 169],
    ),
}


def digest(array):
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()[:16]


@pytest.mark.parametrize('start', [0, 93])
def test_cached_streams_are_unchanged(tiny, start):
    ds = DataSet.from_name('tiny.1@50-100', augment='cifar10')
    images, _ = take_images(ds.train_unlabelled(8, ('weak', 'weak'), seed=5, start=start), 24)
    assert images.shape == (24, 2, SIDE, SIDE, 1)
    assert (digest(images), [index_of(v[0]) for v in images]) == GOLDEN['unlabelled', start]
    images, labels = take_images(ds.train_labelled(8, seed=3, start=start), 24)
    assert (digest(images), [index_of(x) for x in images]) == GOLDEN['labelled', start]
    assert labels.tolist() == [i % NCLASS for i in GOLDEN['labelled', start][1]]


# --------------------------------------------------------------------------- views


def test_unlabelled_views_by_kind(tiny):
    ds = DataSet.from_name('tiny.1@50-100', augment='cifar10')
    weak_weak, _ = take_images(ds.train_unlabelled(8, ('weak', 'weak'), seed=5), 8)
    weak_strong, _ = take_images(ds.train_unlabelled(8, ('weak', 'strong'), seed=5), 8)
    # view 0 is seeded by (seed, 0, i) whatever the other views are
    np.testing.assert_array_equal(weak_strong[:, 0], weak_weak[:, 0])
    assert not np.array_equal(weak_strong[:, 1], weak_weak[:, 1])
    assert weak_strong.min() >= -1 and weak_strong.max() <= 1
    with pytest.raises(UserError, match="'sharp'"):
        ds.train_unlabelled(8, ('weak', 'sharp'), seed=5)


def test_unlabelled_stream_needs_an_unlabel_file(ml_data):
    build_dataset(str(ml_data))
    ds = DataSet.from_records('tiny-10', datanames.train_path('tiny'), datanames.test_path('tiny'), 10)
    with pytest.raises(UserError, match='no unlabelled file'):
        ds.train_unlabelled(8, ('weak',), seed=1)


# --------------------------------------------------------------------------- cache and streamed order


def test_memory_budget_is_shared_labelled_first(ml_data):
    # 64x64x3 images of 12 KiB: 50 labelled = 600 KiB, 70 unlabelled = 840 KiB (+ 10 validation)
    train, test = files(ml_data, [(grey(64, 3), i % 2) for i in range(50)], [(grey(64, 3), 0)] * 2)
    unlabel = str(ml_data / 'x-unlabel.tfrecord')
    write_raw(unlabel, [{'image': encode_png(grey(64, 3)), 'label': -1}] * 80)
    cached = lambda mib: DataSet('x', train, test, unlabel, valid=10, cache_mb=mib).cached  # noqa: E731
    assert cached(0) == {False: False, True: False}
    assert cached(1) == {False: True, True: False}  # 1024 KiB - 600 KiB leave too little for 840 KiB
    assert cached(2) == {False: True, True: True}


def test_streamed_equals_cached_when_a_window_holds_the_epoch(tiny):
    cached = DataSet.from_name('tiny.1@50-100', augment='cifar10')
    streamed = DataSet.from_name('tiny.1@50-100', augment='cifar10', cache_mb=0)
    assert all(cached.cached.values()) and not any(streamed.cached.values())
    # 93 = one 50-image epoch + 43 (labelled), one 70-image epoch + 23 (unlabelled); 64 images cross an epoch
    a, a_labels = take_images(cached.train_labelled(8, seed=3, start=93), 64)
    b, b_labels = take_images(streamed.train_labelled(8, seed=3, start=93), 64)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a_labels, b_labels)
    a, a_labels = take_images(cached.train_unlabelled(8, ('weak', 'weak'), seed=5, start=93), 64)
    b, b_labels = take_images(streamed.train_unlabelled(8, ('weak', 'weak'), seed=5, start=93), 64)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a_labels, b_labels)


def shuffle(positions, key, count):
    """numpy of tf's index_shuffle (the permutation primitive) of `positions` < count under `key`."""
    import tensorflow as tf

    key = tf.constant(key, tf.int64)
    return tf.random.experimental.index_shuffle(tf.constant(positions, tf.int64), key, count - 1).numpy()


def window_order(count, window, seed, epochs):
    """Training positions served by a streamed file, worked out from the rule in `WindowLayout`'s docstring.

    Blocks of b = ceil(window / 64) records, window // b blocks per window; whole blocks
    permuted by (seed, e), the short block last; each window permuted by fold_in((seed, e), w + 1).
    """
    import tensorflow as tf

    block = -(-window // 64)
    per_window = window // block
    full, short = divmod(count, block)
    order = []
    for e in range(epochs):
        blocks = list(shuffle(np.arange(full), [seed, e], full)) + ([full] if short else [])
        for w in range(0, len(blocks), per_window):
            positions = np.concatenate(
                [np.arange(b * block, min(b * block + block, count)) for b in blocks[w : w + per_window]]
            )
            key = tf.random.experimental.stateless_fold_in(tf.constant([seed, e], tf.int64), w // per_window + 1)
            order.extend(positions[shuffle(np.arange(len(positions)), key.numpy(), len(positions))])
    return np.array(order)


def bytes_read():
    """Bytes this process has read from files so far (Linux /proc/self/io rchar)."""
    with open('/proc/self/io') as f:
        return int(next(line for line in f if line.startswith('rchar:')).split()[1])


# --------------------------------------------------------------------------- validation of the baselines


def test_balanced_holdout_by_hand():
    labels = np.array([0, 0, 0, 1, 1, -1, 2, 2, 2, 2])
    # rank 0: records 0 (class 0), 3 (1), 6 (2); rank 1: 1, 4, 7; rank 2: 2, 8 (class 1 has run out)
    assert balanced_holdout(labels, 3).tolist() == [0, 3, 6]
    assert balanced_holdout(labels, 5).tolist() == [0, 1, 3, 4, 6]
    assert balanced_holdout(labels, 8).tolist() == [0, 1, 2, 3, 4, 6, 7, 8]


def test_baseline_validation_is_class_balanced_and_never_trained_on(ml_data):
    # A custom train file sorted by class (as create_datasets.py custom writes it): 20 of each of
    # 10 classes, then 20 unlabelled.
    labels = np.concatenate([np.repeat(np.arange(NCLASS), 20), np.full(20, -1)])
    write_records(datanames.train_path('sorted'), [(encode_png(image_for(i)), y) for i, y in enumerate(labels)])
    write_records(datanames.test_path('sorted'), [(encode_png(image_for(i)), i % NCLASS) for i in range(20)])
    ds = DataSet.from_records('sorted-50', datanames.train_path('sorted'), datanames.test_path('sorted'), 50)
    images, valid_labels = take_images(ds.eval_valid(16), 1000)
    held = [index_of(x) for x in images]
    assert np.bincount(valid_labels, minlength=NCLASS).tolist() == [5] * NCLASS
    assert held == [20 * c + k for c in range(NCLASS) for k in range(5)]  # the first 5 of each class
    assert valid_labels.tolist() == [labels[i] for i in held]
    assert len(ds.train_labels) == 150 and np.bincount(ds.train_labels).tolist() == [15] * NCLASS
    for streamed in (False, True):
        source = (
            ds
            if not streamed
            else DataSet.from_records(
                'sorted-50',
                datanames.train_path('sorted'),
                datanames.test_path('sorted'),
                50,
                cache_mb=0,
                shuffle_buffer=40,
            )
        )
        trained, _ = take_images(source.train_labelled(10, seed=1), 300)
        assert sorted(index_of(x) for x in trained[:150]) == sorted(set(range(200)) - set(held))
    evaluated, _ = take_images(ds.eval_labelled(32), 1000)
    assert sorted(index_of(x) for x in evaluated) == sorted(set(range(200)) - set(held))


# --------------------------------------------------------------------------- data checks


def write_raw(path, examples):
    """Writes tf.train.Examples given as feature dicts {name: bytes | int | list of ints}."""
    import tensorflow as tf

    def feature(value):
        if isinstance(value, bytes):
            return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))
        return tf.train.Feature(int64_list=tf.train.Int64List(value=np.atleast_1d(value).tolist()))

    with tf.io.TFRecordWriter(path) as writer:
        for example in examples:
            features = tf.train.Features(feature={k: feature(v) for k, v in example.items()})
            writer.write(tf.train.Example(features=features).SerializeToString())


def grey(side, channels, value=0):
    return np.full((side, side, channels), value, np.uint8)


def files(ml_data, train, test):
    """Writes x-train/x-test.tfrecord from lists of (image array or bytes, label); returns their paths."""
    paths = datanames.train_path('x'), datanames.test_path('x')
    for path, records in zip(paths, (train, test)):
        write_raw(path, [{'image': x if isinstance(x, bytes) else encode_png(x), 'label': y} for x, y in records])
    return paths


@pytest.mark.parametrize('train_shape, test_shape', [((16, 1), (24, 1)), ((16, 3), (16, 1)), ((16, 4), (16, 1))])
def test_test_file_of_another_shape_is_refused(ml_data, train_shape, test_shape):
    train, test = files(ml_data, [(grey(*train_shape), i % 2) for i in range(8)], [(grey(*test_shape), 0)] * 4)
    with pytest.raises(
        UserError,
        match=rf'^{test} holds {test_shape[0]}x{test_shape[0]}x{test_shape[1]} images .*'
        rf'{train} holds 16x16x{train_shape[1]}: re-create',
    ):
        DataSet.from_records('x-2', train, test, 2)


def test_first_record_not_an_image(ml_data):
    train, test = files(ml_data, [(b'not a png', 0)] + [(grey(16, 1), 1)] * 7, [(grey(16, 1), 0)] * 4)
    with pytest.raises(UserError, match=rf'^{train}: the "image" of record 0 is not a PNG image .*: rebuild it'):
        DataSet.from_records('x-2', train, test, 2)


@pytest.mark.parametrize('cache_mb', [None, 0], ids=['cached', 'streamed'])
@pytest.mark.parametrize(
    'bad, message',
    [
        (b'GARBAGE!', 'holds no PNG image'),
        (encode_png(grey(24, 1)), 'holds a 24x24 image where its first image is 16x16'),
    ],
    ids=['not-an-image', 'another-size'],
)
def test_a_bad_record_deep_in_a_file_names_the_file(ml_data, cache_mb, bad, message):
    train, test = files(ml_data, [(grey(16, 1, i), i % 2) for i in range(30)] + [(bad, 1)], [(grey(16, 1), 0)] * 4)
    ds = DataSet.from_records('x-2', train, test, 2, cache_mb=cache_mb)  # the first records are fine
    # cached: raised while decoding into memory; streamed: while iterating
    with pytest.raises(UserError, match=f'^{train}: a record {message}'), ds.pipeline_errors():
        take_images(ds.train_labelled(8, seed=0), 64)
    with pytest.raises(UserError, match=f'^{train}: a record {message}'), ds.pipeline_errors():
        take_images(ds.eval_labelled(8), 64)


def test_other_errors_pass_through_pipeline_errors(tiny):
    import tensorflow as tf

    ds = DataSet.from_name('tiny.1@50-10')
    with pytest.raises(tf.errors.InvalidArgumentError), ds.pipeline_errors():
        tf.debugging.assert_equal(1, 2, message='model trouble')


@pytest.mark.parametrize('missing', ['label', 'image'])
def test_records_without_a_feature(ml_data, missing):
    records = [{'image': encode_png(grey(16, 1)), 'label': i % 2} for i in range(6)]
    del records[4][missing]
    write_raw(datanames.train_path('x'), records)
    write_raw(datanames.test_path('x'), records[:2])
    with pytest.raises(
        UserError,
        match=rf'^{datanames.train_path("x")}: record 4 has no "{missing}" feature: '
        'every record needs',
    ):
        DataSet.from_records('x-2', datanames.train_path('x'), datanames.test_path('x'), 2)
    del records[0][missing]
    write_raw(datanames.train_path('x'), records)
    with pytest.raises(UserError, match=rf'record 0 has no single "{missing}" value'):
        DataSet.from_records('x-2', datanames.train_path('x'), datanames.test_path('x'), 2)


def test_truncated_file(ml_data):
    train, test = files(ml_data, [(grey(16, 1, i), i % 2) for i in range(40)], [(grey(16, 1), 0)] * 4)
    with open(train, 'rb') as f:
        content = f.read()
    with open(train, 'wb') as f:
        f.write(content[:-30])
    with pytest.raises(
        UserError, match=rf"^{train} is truncated \(its record at byte \d+ is cut short[^']*: rebuild it"
    ):
        DataSet.from_records('x-2', train, test, 2)


@pytest.mark.parametrize(
    'label_size, fixes',
    [
        (None, r'use <valid> <= 150 \(e.g. --dataset=tiny.1@50-150\)$'),
        (
            120,
            r'use <valid> <= 70 \(e.g. --dataset=tiny.1@50-70\), or re-create the split with '
            r'scripts/create_split.py and a larger --label_size$',
        ),
    ],
)
def test_validation_beyond_capacity_suggests_what_works(ml_data, label_size, fixes):
    build_dataset(str(ml_data), n_train=220, n_unlabelled=20, label_size=label_size)
    with pytest.raises(
        UserError,
        match=r'^--dataset=tiny.1@50-99999: validation size 99999 exceeds the \d+ '
        r'held-out labelled records at the head of .*: ' + fixes,
    ) as error:
        DataSet.from_name('tiny.1@50-99999')
    assert 'make_aug_copy' not in str(error.value)


def test_validation_beyond_an_augmented_copy_suggests_its_valid_size(ml_data):
    build_dataset(str(ml_data), n_train=220, n_unlabelled=20)  # tiny.1@50 holds 150 held-out records
    label, unlabel, map_file = datanames.split_paths('tiny_aug2.1@50')
    for source, target in zip(datanames.split_paths('tiny.1@50')[:2], (label, unlabel)):
        with open(source, 'rb') as f, open(target, 'wb') as g:
            g.write(f.read())
    with open(datanames.test_path('tiny'), 'rb') as f, open(datanames.test_path('tiny_aug2'), 'wb') as g:
        g.write(f.read())
    splits.write_map(map_file, {'source': 'tiny.1@50', 'valid_capacity': 30, 'clean_head': 30, 'label_size': None})
    with pytest.raises(
        UserError,
        match=r'use <valid> <= 30 \(e.g. --dataset=tiny_aug2.1@50-30\), or re-run '
        r'scripts/make_aug_copy.py --aug_dataset=tiny.1@50 --valid_size=40 --overwrite$',
    ):
        DataSet.from_name('tiny_aug2.1@50-40')
    with pytest.raises(UserError, match=r'--valid_size=150 --overwrite$'):
        DataSet.from_name('tiny_aug2.1@50-400')


def test_baseline_data_never_contains_unlabelled_records(ml_data):
    rng = np.random.RandomState(0)
    labelled = [(encode_png(rng.randint(0, 200, (8, 8, 1))), i % 3) for i in range(12)]
    unlabelled = [(encode_png(np.full((8, 8, 1), 255)), -1) for _ in range(12)]
    mixed = [r for pair in zip(labelled, unlabelled) for r in pair]
    write_records(str(ml_data / 'mix-train.tfrecord'), mixed)
    write_records(str(ml_data / 'mix-test.tfrecord'), labelled[:3])
    dataset = DataSet.from_records(
        'mix-2', str(ml_data / 'mix-train.tfrecord'), str(ml_data / 'mix-test.tfrecord'), valid=2
    )
    assert len(dataset.train_labels) == 10
    seen = set()
    for images, labels in dataset.train_labelled(5, seed=0).take(8):  # four epochs of 10 images
        assert np.all(labels.numpy() >= 0)
        assert not np.any(np.all(images.numpy() == 1.0, axis=(1, 2, 3)))  # no all-white unlabelled image
        seen.update(tuple(img.ravel()) for img in images.numpy())
    assert len(seen) == 10
    valid = [y for _, ys in dataset.eval_valid(8) for y in ys.numpy()]
    assert valid == [0, 1]


def test_outlier_status_by_hand():
    labels = [0, 3, -1, -1, 2, -1]
    source = [5, 9, 8, -1, 7, 4]  # labels before --label_order: 8 and 4 became -1, the -1 was unlabelled already
    np.testing.assert_array_equal(outlier_status(labels, None, [0, 2]), [0, 1, -1, -1, 0, -1])
    np.testing.assert_array_equal(outlier_status(labels, source, [0, 2]), [0, 1, 1, -1, 0, 1])


def test_unlabelled_outlier_sample_is_fixed_and_bounded(digits_mismatch):
    dataset = DataSet.from_name(MISMATCH_DATASET, root=str(digits_mismatch))
    _, everyone = dataset.eval_unlabelled_outliers(512, 100000)
    batches, is_outlier = dataset.eval_unlabelled_outliers(100, 50)
    again = dataset.eval_unlabelled_outliers(100, 50)[1]
    assert len(everyone) == dataset.unlabel_count and len(is_outlier) == 50
    np.testing.assert_array_equal(is_outlier, again)
    assert sum(len(y) for _, y in batches) == 50 and 0 < is_outlier.sum() < 50
    assert dataset.eval_unlabelled_outliers(100, 0) is None
