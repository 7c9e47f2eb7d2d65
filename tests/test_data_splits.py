"""create_split, make_aug_copy, filter_dataset and inspect_dataset: pure logic in-process, the
commands end to end on tiny record files (few subprocesses: each pays TensorFlow's import)."""

import os
import subprocess
import sys

from libml.data import augment as augment_lib
from libml.data import names as datanames
from libml.data import splits
from libml.data.records import decode_png, encode_png, parse_example, read_records, write_records
from libml.errors import UserError
from libml.files import _host

import numpy as np
import pytest
import tensorflow as tf
from absl import flags
from test_data_dataset import NCLASS, image_for

if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()


def assert_user_error(proc, *fragments):
    """Exit 1 with exactly one `error:` line containing `fragments`, and no traceback."""
    errors = [line for line in proc.stderr.splitlines() if line.startswith('error: ')]
    assert proc.returncode == 1, proc.stderr
    assert len(errors) == 1 and 'Traceback' not in proc.stderr, proc.stderr
    for fragment in fragments:
        assert fragment in errors[0]


def files_under(root):
    """Relative paths of every file under `root` (temporary files included)."""
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, names in os.walk(root) for f in names)


def temp_files(root):
    return [f for f in files_under(root) if f.endswith('.tmp')]


def temp_name(path, pid):
    """The temporary file name libml.files gives `path` in process `pid` (random part 'abc123')."""
    return os.path.join(os.path.dirname(path), f'.{os.path.basename(path)}.{_host()}.{pid}.abc123.tmp')


def dead_pid():
    """The pid of a process that has finished (and been reaped)."""
    proc = subprocess.Popen([sys.executable, '-c', 'pass'])
    proc.wait()
    return proc.pid


def records(path):
    """(images uint8 [N, H, W, 1], labels [N]) of a record file."""
    pairs = list(read_records(str(path)))
    return np.stack([decode_png(p) for p, _ in pairs]), np.array([label for _, label in pairs])


def write_train(root, labels, name='tiny'):
    """<name>-train.tfrecord with image_for(i) and labels[i]; returns its path."""
    path = datanames.train_path(name, str(root))
    write_records(path, [(encode_png(image_for(i)), v) for i, v in enumerate(labels)])
    return path


# --------------------------------------------------------------------------- pure logic


def test_class_quotas():
    assert splits.class_quotas({0: 10, 1: 10, 2: 10}, 9) == {0: 3, 1: 3, 2: 3}
    assert splits.class_quotas({0: 4, 1: 9, 2: 9}, 11) == {0: 3, 1: 4, 2: 4}
    assert splits.class_quotas({0: 5, 1: 5, 2: 5}, 4) == {0: 2, 1: 1, 2: 1}
    with pytest.raises(UserError, match='class 0 has only 2'):
        splits.class_quotas({0: 2, 1: 9}, 6)
    with pytest.raises(UserError, match='exceeds the 18 labelled records'):
        splits.class_quotas({0: 9, 1: 9}, 19)


def test_round_robin():
    assert splits.round_robin([[1, 2, 3], [7], [4, 5]]).tolist() == [1, 7, 4, 2, 5, 3]
    assert splits.round_robin([[], []]).tolist() == []


def test_make_split_is_balanced_and_seeded():
    labels = np.arange(300) % NCLASS
    split = splits.make_split(labels, 50, seed=1)
    assert np.bincount(labels[split['label']]).tolist() == [5] * NCLASS
    assert sorted(split['label'].tolist() + split['unlabel'].tolist()) == list(range(300))
    assert split['valid_capacity'] == 250
    # held-out classes interleaved: any 10 consecutive head records hold every class once
    assert sorted(labels[split['unlabel'][:10]].tolist()) == list(range(NCLASS))
    again = splits.make_split(labels, 50, seed=1)
    np.testing.assert_array_equal(split['label'], again['label'])
    other = splits.make_split(labels, 50, seed=2)
    assert set(other['label'].tolist()) != set(split['label'].tolist())
    in_order = splits.make_split(labels, 50, seed=0)
    assert in_order['label'].tolist() == list(range(50))


def test_make_split_label_size_and_unlabelled_records():
    labels = np.r_[np.arange(60) % 3, np.full(15, -1), np.arange(9) % 3]
    split = splits.make_split(labels, 45, seed=3, label_size=60)
    assert split['valid_capacity'] == 15
    assert split['unlabel'][15:].tolist() == list(range(60, 84))
    assert (labels[split['unlabel'][:15]] >= 0).all()
    with pytest.raises(UserError, match='--label_size=85'):
        splits.make_split(labels, 45, seed=3, label_size=85)
    with pytest.raises(UserError, match='exceeds the 60 labelled'):
        splits.make_split(labels, 61, seed=3, label_size=60)
    with pytest.raises(UserError, match='no labelled records'):
        splits.make_split([-1, -1], 1, seed=1)


def reference_copies(path, skip, count, copies, augment, seed, shape, buffer):
    """(PNG bytes, label) of an augmented copy as the original per-image tf.data pipeline made it.

    The code of make_aug_copy before it was made faster, kept here as the reference: one
    tf.data element per image, tf.io.encode_png, a shuffle buffer over the element stream.
    """
    augment_fn = augment_lib.get(augment)
    records = tf.data.TFRecordDataset(path).skip(skip).take(count).map(parse_example)

    def one_copy(k):
        return records.enumerate().map(lambda i, r: (k * count + i, r))

    def augment_one(index, record):
        image = tf.ensure_shape(tf.io.decode_png(record['image'], channels=shape[2]), shape)
        image = tf.image.convert_image_dtype(image, tf.float32)
        image = augment_fn(image, tf.stack([tf.constant(seed, tf.int64), index]))
        image = tf.image.convert_image_dtype(image, tf.uint8, saturate=True)
        return tf.io.encode_png(image), record['label']

    ds = tf.data.Dataset.range(copies).flat_map(one_copy).map(augment_one, num_parallel_calls=tf.data.AUTOTUNE)
    return list(ds.shuffle(buffer, seed=seed).as_numpy_iterator())


def parsed(serialized):
    """(PNG bytes, label) of serialized Examples."""
    examples = [tf.train.Example.FromString(r) for r in serialized]
    return [
        (e.features.feature['image'].bytes_list.value[0], e.features.feature['label'].int64_list.value[0])
        for e in examples
    ]


def test_record_file_reads_records_by_index(ml_data, tmp_path):
    first = write_train(ml_data, [1, 2, 3])
    second = str(tmp_path / 'second.tfrecord')
    write_records(second, [(encode_png(image_for(7)), -1)])
    records = splits.RecordFile([first, second])
    raw = [r.numpy() for path in (first, second) for r in tf.data.TFRecordDataset(path)]
    assert len(records) == 4 and [records.read(i) for i in (3, 0, 2, 1)] == [raw[3], raw[0], raw[2], raw[1]]
    records.close()
    with open(second, 'ab') as f:
        f.write(b'\x05' + b'\x00' * 7)
    with pytest.raises(UserError, match='truncated'):
        splits.RecordFile([second])


# --------------------------------------------------------------------------- create_split


def test_check_stem():
    assert splits.check_stem('/data/SSL/my_data2') == 'my_data2'
    for bad in ('/data/SSL/ti-ny', 'SSL/a.b', 'SSL/'):
        with pytest.raises(UserError, match='must be a dataset name'):
            splits.check_stem(bad)


# --------------------------------------------------------------------------- make_aug_copy


# --------------------------------------------------------------------------- temporary files, write failures


# --------------------------------------------------------------------------- filter_dataset


# --------------------------------------------------------------------------- inspect_dataset
