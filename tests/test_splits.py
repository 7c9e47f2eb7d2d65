"""create_split, make_aug_copy, filter_dataset and inspect_dataset: pure logic in-process, the
commands end to end on tiny record files (few subprocesses: each pays TensorFlow's import)."""

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

from libml.data import aug_copies, filtering, record_encoder, splits
from libml.data import augment as augment_lib
from libml.data import names as datanames
from libml.data.dataset import DataSet
from libml.data.records import count_records, decode_png, encode_png, parse_example, read_records, write_records
from libml.errors import UserError
from libml.files import _host, atomic_output, atomic_outputs

import numpy as np
import pytest
import tensorflow as tf
from absl import flags
from conftest import ROOT, run_cli, tmpfs
from test_data import NCLASS, build_dataset, image_for, index_of, take_images


@pytest.fixture(autouse=True)
def no_global_seed():
    """make_aug_copy runs in a fresh process; tf.data's seeded shuffle also depends on the global seed,
    which earlier tests in this process may have set."""
    tf.random.set_seed(None)


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


def test_relabel_and_heldout_first():
    labels = np.array([2, 0, 5, 3, 9, 2, 0, 5])
    kept, new = filtering.relabel(labels, [0, 2, 5])
    assert kept.tolist() == [0, 1, 2, 5, 6, 7] and new.tolist() == [2, 0, 5, 2, 0, 5]
    kept, new = filtering.relabel(labels, [0, 2, 5], label_order=[5, 2, 3])
    assert new.tolist() == [1, -1, 0, 1, -1, 0]
    order, capacity = filtering.heldout_first(kept, new, valid_capacity=4)
    assert kept[order].tolist() == [0, 2, 1, 5, 6, 7] and capacity == 2


def test_choose_valid_size():
    assert aug_copies.choose_valid_size(50) == 50
    assert aug_copies.choose_valid_size(300, 100) == 100
    assert aug_copies.choose_valid_size(300, 0) == 0
    with pytest.raises(UserError, match='--valid_size=51'):
        aug_copies.choose_valid_size(50, 51)


def test_describe_record_file(tmp_path):
    assert filtering.describe_record_file(tmp_path / 'SSL' / 'cifar6_m0.1@250-unlabel.tfrecord') == {
        'root': str(tmp_path),
        'name': 'cifar6_m0',
        'part': 'unlabel',
        'stem': 'cifar6_m0.1@250',
    }
    assert filtering.describe_record_file(tmp_path / 'cifar6-test.tfrecord') == {
        'root': str(tmp_path),
        'name': 'cifar6',
        'part': 'test',
        'stem': None,
    }
    assert filtering.describe_record_file(tmp_path / 'odd.name.tfrecord') is None


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


def test_encode_pngs_is_byte_for_byte_tensorflows_encoder():
    rng = np.random.default_rng(0)
    for shape in [(32, 32, 3), (16, 16, 1), (5, 3, 1), (1, 1, 3), (9, 9, 1), (96, 96, 3), (7, 13, 4)]:
        images = rng.integers(0, 256, (9,) + shape, dtype=np.uint8)
        images[3:6] //= 64  # few levels: long matches for zlib
        images[6:] = rng.integers(0, 256, (3, 1) + shape[1:], dtype=np.uint8)  # repeated rows: the up filter
        pngs = record_encoder.encode_pngs(images)
        assert pngs == [tf.io.encode_png(x).numpy() for x in images], shape
        for png, x in zip(pngs, images):
            np.testing.assert_array_equal(decode_png(png).reshape(shape), x)


def test_png_filter_rows_by_hand():
    """libpng's choice: the smallest sum of |byte as int8|, first filter on ties (none, sub, up, avg, Paeth).

    [[10, 20], [10, 20]]: row 0 sub (10, 10: 20 < none 30), row 1 up (0, 0: 0).
    [[100, 100], [50, 100]]: row 0 sub (100, 0: 100; Paeth ties at 100, sub comes first); row 1
    average (50 - (0 + 100) // 2 = 0, 100 - (50 + 100) // 2 = 25: 25 < up's 50 + 0).
    [[250, 5]]: none (250 -> 6, 5 -> 5: 11 < sub's 6 + (5 - 250) % 256 = 11 -> 17; up ties, none first).
    """

    def rows(pixels):
        return record_encoder.png_filter_rows(np.array(pixels, np.uint8)[None, :, :, None])[0].tolist()

    assert rows([[10, 20], [10, 20]]) == [[1, 10, 10], [2, 0, 0]]
    assert rows([[100, 100], [50, 100]]) == [[1, 100, 0], [3, 0, 25]]
    assert rows([[250, 5]]) == [[0, 250, 5]]


def test_example_bytes_is_the_deterministic_serialization():
    # sizes around the varint steps of the nested lengths (127/128, 16383/16384), twice each (cached heads)
    sizes = [0, 4, 115, 116, 120, 124, 125, 127, 128, 300, 16370, 16372, 16380, 16384, 1 << 21]
    cases = [(b'\x89PNG', 3), (b'abc', 1 << 40)] + [(b'x' * n, label) for n in sizes for label in (-1, 0, 300)]
    for png, label in cases * 2:
        feature = {
            'image': tf.train.Feature(bytes_list=tf.train.BytesList(value=[png])),
            'label': tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
        }
        example = tf.train.Example(features=tf.train.Features(feature=feature))
        assert record_encoder.example_bytes(png, label) == example.SerializeToString(deterministic=True)
        record = parse_example(record_encoder.example_bytes(png, label))
        assert record['image'].numpy() == png and record['label'].numpy() == label


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


def test_augmented_records_equal_the_per_image_pipeline_for_any_workers_and_chunks(ml_data, tmp_path):
    labels = np.r_[np.arange(24) % NCLASS, [-1] * 6]
    path = write_train(ml_data, labels)
    pixels, got_labels = aug_copies.PixelFile.decode(str(tmp_path / 'pixels'), path, 4, 26, (16, 16, 1))
    assert got_labels.tolist() == labels[4:].tolist()
    np.testing.assert_array_equal(pixels.gather([25, 0, 0]), [image_for(29), image_for(4), image_for(4)])
    runs = [
        [
            r
            for chunk in aug_copies.augmented_records(pixels, got_labels, 3, 'cutout', 7, buffer=10, workers=w, chunk=c)
            for r in chunk
        ]
        for w, c in [(1, None), (3, 5), (2, 1)]
    ]
    assert runs[0] == runs[1] == runs[2]
    reference = reference_copies(path, 4, 26, 3, 'cutout', 7, (16, 16, 1), buffer=10)
    assert parsed(runs[0]) == reference
    indices = [index_of(decode_png(png)) for png, _ in reference]
    assert sorted(indices) == sorted(list(range(4, 30)) * 3)
    assert [label for _, label in reference] == [labels[i] for i in indices]
    changed = sum(not np.array_equal(decode_png(png), image_for(i)) for (png, _), i in zip(reference, indices))
    assert changed > len(reference) // 2
    pixels.close()


def test_pixel_file_rejects_a_short_file_and_an_image_of_another_shape(ml_data, tmp_path):
    path = datanames.train_path('odd', str(ml_data))
    write_records(path, [(encode_png(image_for(0)), 0), (encode_png(image_for(1)), 1)])
    with pytest.raises(UserError, match='holds 2 records, fewer than the 3'):
        aug_copies.PixelFile.decode(str(tmp_path / 'pixels'), path, 0, 3, (16, 16, 1))
    write_records(path, [(encode_png(image_for(0)), 0), (encode_png(np.zeros((8, 8, 1), np.uint8)), 1)], overwrite=True)
    with pytest.raises(UserError, match='record 1 is not a 16x16x1 image'):
        aug_copies.PixelFile.decode(str(tmp_path / 'pixels'), path, 0, 2, (16, 16, 1))
    write_records(path, [(encode_png(image_for(0)), 0), (b'GARBAGE!', 1)], overwrite=True)
    with pytest.raises(UserError, match='record 1 is not a 16x16x1 image'):
        aug_copies.PixelFile.decode(str(tmp_path / 'pixels'), path, 0, 2, (16, 16, 1))


# --------------------------------------------------------------------------- create_split


def test_create_split_command(ml_data):
    labels = np.arange(200) % NCLASS
    train = write_train(ml_data, labels)
    prefix = ml_data / 'SSL' / 'tiny'
    label_file, unlabel_file, map_file = datanames.split_paths('tiny.1@50', str(ml_data))
    os.makedirs(prefix.parent)  # leftovers of killed runs: the outputs' own go, another file's stays
    stale = [temp_name(label_file, dead_pid()), temp_name(unlabel_file, dead_pid())]
    other = temp_name(str(prefix.parent / 'unrelated.tfrecord'), dead_pid())
    for path in stale + [other]:
        pathlib.Path(path).touch()
    run_cli(['scripts/create_split.py', '--seed=1', '--label_split_size=50', prefix, train], ml_data)
    assert temp_files(ml_data) == [os.path.relpath(other, ml_data)]
    os.remove(other)
    expected = splits.make_split(labels, 50, 1)
    images, got = records(label_file)
    assert np.bincount(got).tolist() == [5] * NCLASS
    assert [index_of(x) for x in images] == expected['label'].tolist()
    assert [index_of(x) for x in records(unlabel_file)[0]] == expected['unlabel'].tolist()
    split_map = json.loads(pathlib.Path(map_file).read_text())
    assert split_map['valid_capacity'] == 150 and split_map['label'] == expected['label'].tolist()
    assert split_map['label_counts'] == {str(c): 5 for c in range(NCLASS)}

    before = {p: pathlib.Path(p).read_bytes() for p in (label_file, unlabel_file, map_file)}
    proc = run_cli(
        ['scripts/create_split.py', '--seed=1', '--label_split_size=50', prefix, train], ml_data, check=False
    )
    assert_user_error(proc, 'already exists', '--overwrite')
    assert {p: pathlib.Path(p).read_bytes() for p in before} == before
    assert not [f for f in files_under(ml_data) if f.endswith('.tmp')]


def test_create_split_custom_label_size(ml_data):
    """The README's custom form: labelled images first, then unlabelled ones (-1)."""
    labels = np.r_[np.arange(120) % NCLASS, [-1] * 40]
    train = write_train(ml_data, labels, name='mydataset')
    write_records(datanames.test_path('mydataset', str(ml_data)), [(encode_png(image_for(0)), 0)])
    run_cli(
        [
            './scripts/create_split.py',
            '--seed=1',
            '--label_split_size=100',
            '--label_size=120',
            ml_data / 'SSL' / 'mydataset',
            train,
        ],
        ml_data,
    )
    ds = DataSet.from_name('mydataset.1@100-20')
    images, valid_labels = take_images(ds.eval_valid(64), 100)
    assert len(images) == 20 and np.bincount(valid_labels).tolist() == [2] * NCLASS
    assert all(index_of(x) % NCLASS == y and index_of(x) < 120 for x, y in zip(images, valid_labels))
    assert ds.unlabel_count == 40
    with pytest.raises(UserError, match='exceeds the 20 held-out'):
        DataSet.from_name('mydataset.1@100-21')


def test_create_split_error_leaves_no_file(ml_data):
    write_train(ml_data, np.arange(200) % NCLASS)
    before = files_under(ml_data)
    proc = run_cli(
        [
            'scripts/create_split.py',
            '--seed=2',
            '--label_split_size=300',
            ml_data / 'SSL' / 'tiny',
            ml_data / 'tiny-train.tfrecord',
        ],
        ml_data,
        check=False,
    )
    assert_user_error(proc, 'exceeds the 200 labelled records')
    assert files_under(ml_data) == before


def test_check_stem():
    assert splits.check_stem('/data/SSL/my_data2') == 'my_data2'
    for bad in ('/data/SSL/ti-ny', 'SSL/a.b', 'SSL/'):
        with pytest.raises(UserError, match='must be a dataset name'):
            splits.check_stem(bad)


# --------------------------------------------------------------------------- make_aug_copy


def test_make_aug_copy(ml_data, tmp_path):
    split = build_dataset(str(ml_data), n_train=220, n_unlabelled=20, label_size=200)  # 150 held out + 20
    names = {str(i): f'class{i}' for i in range(NCLASS)}
    pathlib.Path(datanames.class_mapping_path('tiny', str(ml_data))).write_text(json.dumps(names))
    other = tmp_path / 'other_ml_data'
    shutil.copytree(ml_data, other)
    command = [
        'scripts/make_aug_copy.py',
        '--aug_dataset=tiny.1@50',
        '--aug_copy=3',
        '--augment=svhn',
        '--unlabel_size=20',
    ]
    run_cli(command + ['--workers=3'], ml_data)
    run_cli(command + ['--workers=1'], other)
    assert files_under(ml_data) == files_under(other)
    for name in files_under(ml_data):  # the same files, byte for byte, whatever the number of threads
        assert pathlib.Path(ml_data / name).read_bytes() == pathlib.Path(other / name).read_bytes(), name
    label_file, unlabel_file, map_file = datanames.split_paths('tiny_aug3.1@50', str(ml_data))
    source = datanames.split_paths('tiny.1@50', str(ml_data))
    assert pathlib.Path(label_file).read_bytes() == pathlib.Path(source[0]).read_bytes()
    serialized = [r.numpy() for r in tf.data.TFRecordDataset(unlabel_file)]
    assert serialized[:150] == [r.numpy() for r in tf.data.TFRecordDataset(source[1]).take(150)]
    # the augmented images and their order are those of the original per-image pipeline
    assert parsed(serialized[150:]) == reference_copies(source[1], 150, 20, 3, 'svhn', 1, (16, 16, 1), 10000)
    images, labels = records(unlabel_file)
    assert len(labels) == 150 + 3 * 20
    head = [index_of(x) for x in images[:150]]
    assert head == split['unlabel'][:150].tolist()
    tail = [index_of(x) for x in images[150:]]
    assert sorted(tail) == sorted(split['unlabel'][150:].tolist() * 3)
    assert labels.tolist() == [i % NCLASS if i < 200 else -1 for i in head + tail]
    assert json.loads(pathlib.Path(map_file).read_text())['valid_capacity'] == 150
    assert json.loads(pathlib.Path(datanames.class_mapping_path('tiny_aug3', str(ml_data))).read_text()) == names
    test_copy = datanames.test_path('tiny_aug3', str(ml_data))
    assert pathlib.Path(test_copy).read_bytes() == pathlib.Path(datanames.test_path('tiny', str(ml_data))).read_bytes()

    ds = DataSet.from_name('tiny_aug3.1@50-100')
    valid, valid_labels = take_images(ds.eval_valid(64), 1000)
    assert [index_of(x) for x in valid] == split['unlabel'][:100].tolist()
    assert valid_labels.tolist() == [i % NCLASS for i in split['unlabel'][:100]]
    assert ds.class_names[3] == 'class3' and ds.unlabel_count == 3 * 20  # the clean head is never trained on

    before = {f: pathlib.Path(ml_data / f).read_bytes() for f in files_under(ml_data)}
    proc = run_cli(
        [
            'scripts/make_aug_copy.py',
            '--aug_dataset=tiny.1@50',
            '--aug_copy=2',
            '--augment=cutout',
            '--unlabel_size=170',
        ],
        ml_data,
        check=False,
    )
    assert_user_error(proc, '--unlabel_size=170', 'holds 20 unlabelled training')
    assert {f: pathlib.Path(ml_data / f).read_bytes() for f in files_under(ml_data)} == before


def test_make_aug_copy_of_a_benchmark_split_augments_everything_and_keeps_a_clean_head(ml_data):
    split = build_dataset(str(ml_data), n_train=150, size=50)  # no --label_size: 100 held-out records
    run_cli(
        [
            'scripts/make_aug_copy.py',
            '--aug_dataset=tiny.1@50',
            '--aug_copy=2',
            '--augment=cifar10',
            '--unlabel_size=100',
        ],
        ml_data,
    )
    images, labels = records(datanames.split_paths('tiny_aug2.1@50', str(ml_data))[1])
    assert len(labels) == 100 + 2 * 100
    assert sorted(index_of(x) for x in images[100:]) == sorted(split['unlabel'].tolist() * 2)
    ds = DataSet.from_name('tiny_aug2.1@50-60')
    valid, valid_labels = take_images(ds.eval_valid(64), 1000)
    assert [index_of(x) for x in valid] == split['unlabel'][:60].tolist()
    assert valid_labels.tolist() == [i % NCLASS for i in split['unlabel'][:60]]
    assert ds.unlabel_count == 200


# --------------------------------------------------------------------------- temporary files, write failures


def test_a_killed_make_aug_copy_leaves_temporary_files_that_the_next_run_removes(ml_data):
    build_dataset(str(ml_data), n_train=220, n_unlabelled=20, label_size=200)
    command = [sys.executable, 'scripts/make_aug_copy.py', '--aug_dataset=tiny.1@50', '--aug_copy=60', '--augment=svhn']
    env = dict(os.environ, ML_DATA=str(ml_data), TF_CPP_MIN_LOG_LEVEL='3', CUDA_VISIBLE_DEVICES='')
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not temp_files(ml_data) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)  # mid-write: its temporary files exist, nothing is renamed yet
    assert proc.wait() == -signal.SIGKILL
    left = temp_files(ml_data)
    assert left and all(f'.{proc.pid}.' in name for name in left), left
    assert not os.path.exists(datanames.split_paths('tiny_aug60.1@50', str(ml_data))[1])
    live = temp_name(datanames.split_paths('tiny_aug60.1@50', str(ml_data))[1], os.getpid())  # a live writer's
    pathlib.Path(live).touch()
    run_cli(command[1:], ml_data)
    assert temp_files(ml_data) == [os.path.relpath(live, ml_data)]
    assert count_records(datanames.split_paths('tiny_aug60.1@50', str(ml_data))[1]) == 150 + 60 * 20


def test_full_disk_names_the_output(tmp_path):
    with tmpfs(tmp_path / 'small', 'size=32k') as small:
        # TensorFlow's writer and Python's: the same one line, naming the output, no temporary file left
        def tensorflow_writer(tmp):
            with tf.io.TFRecordWriter(tmp) as writer:
                for _ in range(100):
                    writer.write(b'x' * 1000)

        for write in (tensorflow_writer, lambda tmp: pathlib.Path(tmp).write_bytes(b'x' * 100_000)):
            message = f'no space left on the device of {small} while writing {small}/out'
            with pytest.raises(UserError, match=message), atomic_output(str(small / 'out')) as tmp:
                write(tmp)
            assert os.listdir(small) == []


def test_full_disk_during_make_aug_copy(ml_data):
    with tmpfs(ml_data / 'SSL', 'size=96k') as ssl:
        build_dataset(str(ml_data), n_train=220, n_unlabelled=20, label_size=200)
        before = files_under(ssl)
        proc = run_cli(
            ['scripts/make_aug_copy.py', '--aug_dataset=tiny.1@50', '--aug_copy=200', '--augment=svhn'],
            ml_data,
            check=False,
        )
        assert_user_error(proc, 'no space left on the device', str(ssl), 'tiny_aug200.1@50-unlabel.tfrecord')
        assert '.tmp' not in proc.stderr and files_under(ssl) == before


def test_unwritable_folder_names_the_folder(ml_data, tmp_path):
    train = write_train(ml_data, np.arange(100) % NCLASS)
    (tmp_path / 'a_file').write_text('')
    message = f'cannot write .*: {tmp_path}/a_file is a file, not a folder'
    with (
        pytest.raises(UserError, match=message),
        atomic_outputs([str(tmp_path / 'ok'), str(tmp_path / 'a_file/out')]),
    ):
        pass
    assert sorted(os.listdir(tmp_path)) == ['a_file', 'ml_data']
    with tmpfs(tmp_path / 'locked', 'size=1m,ro') as locked:
        with pytest.raises(OSError, match='Read-only file system'):
            (locked / 'probe').touch()  # refused even to root, unlike a chmod
        proc = run_cli(
            ['scripts/create_split.py', '--seed=1', '--label_split_size=50', locked / 'tiny', train],
            ml_data,
            check=False,
        )
    assert_user_error(
        proc,
        f'cannot write {locked}/tiny.1@50-label.tfrecord: the folder {locked} is not writable',
        'Read-only file system',
    )
    assert '.tmp' not in proc.stderr


# --------------------------------------------------------------------------- filter_dataset


def test_out_of_distribution_workflow(ml_data):
    """The README's mismatch recipe on a 10-class split, renumbered to a 6-class dataset."""
    split = build_dataset(str(ml_data), n_train=200, size=60)  # 140 held-out labelled records
    root, ssl = ml_data, ml_data / 'SSL'
    pathlib.Path(datanames.class_mapping_path('tiny', str(root))).write_text(
        json.dumps({str(i): f'c{i}' for i in range(NCLASS)})
    )
    order = '--label_order=2,3,4,5,6,7'
    run_cli(
        [
            'filter_dataset.py',
            '--class_filter=2,3,4,5,6,7',
            order,
            f'--filter_dataset={ssl}/tiny.1@60-label.tfrecord',
            f'--save_name={ssl}/tiny6_mm25.1@60-label.tfrecord',
        ],
        ml_data,
    )
    run_cli(
        [
            './filter_dataset.py',
            '--class_filter=0,5,6,7',
            order,
            f'--filter_dataset={ssl}/tiny.1@60-unlabel.tfrecord',
            f'--save_name={ssl}/tiny6_mm25.1@60-unlabel.tfrecord',
        ],
        ml_data,
    )
    run_cli(
        [
            'filter_dataset.py',
            '--class_filter=2,3,4,5,6,7',
            order,
            f'--filter_dataset={root}/tiny-test.tfrecord',
            '--save_name=tiny6_mm25-test',
        ],
        ml_data,
    )

    images, labels = records(ssl / 'tiny6_mm25.1@60-unlabel.tfrecord')
    original = np.array([index_of(x) % NCLASS for x in images])
    assert sorted(set(original.tolist())) == [0, 5, 6, 7] and len(labels) == 56
    assert labels.tolist() == [{5: 3, 6: 4, 7: 5}.get(c, -1) for c in original]
    split_map = json.loads(pathlib.Path(ssl / 'tiny6_mm25.1@60-map.json').read_text())
    assert split_map['valid_capacity'] == 42  # 14 held-out images each of classes 5, 6 and 7
    assert split_map['label'] == [i for i in split['label'].tolist() if i % NCLASS in range(2, 8)]
    names = json.loads(pathlib.Path(root / 'tiny6_mm25_class_mappings.json').read_text())
    assert names == {str(i): f'c{i + 2}' for i in range(6)}
    assert os.path.exists(root / 'tiny6_mm25-test-map.json')

    ds = DataSet.from_name('tiny6_mm25.1@60-42', augment='svhn')
    assert ds.nclass == 6 and ds.class_names == ['c2', 'c3', 'c4', 'c5', 'c6', 'c7']
    valid, valid_labels = take_images(ds.eval_valid(64), 1000)
    assert len(valid) == 42 and all(index_of(x) % NCLASS == y + 2 for x, y in zip(valid, valid_labels))
    train, train_labels = take_images(ds.train_labelled(6, seed=1), 36)
    assert all(index_of(x) % NCLASS == y + 2 for x, y in zip(train, train_labels))
    test, test_labels = take_images(ds.eval_test(64), 1000)
    assert len(test) == 24 and all(index_of(x) % NCLASS == y + 2 for x, y in zip(test, test_labels))
    assert ds.unlabel_count == 14
    with pytest.raises(UserError, match='exceeds the 42 held-out'):
        DataSet.from_name('tiny6_mm25.1@60-43')


def test_filter_plain_file_to_a_path(ml_data, tmp_path):
    build_dataset(str(ml_data), n_train=100, n_unlabelled=20)
    out = tmp_path / 'elsewhere' / 'small'
    run_cli(
        [
            'filter_dataset.py',
            '--class_filter=1,3,-1',
            f'--filter_dataset={ml_data}/tiny-train.tfrecord',
            f'--save_name={out}',
        ],
        ml_data,
    )
    images, labels = records(str(out) + '.tfrecord')
    kept = [i for i in range(100) if i >= 80 or i % NCLASS in (1, 3)]
    assert [index_of(x) for x in images] == kept
    assert labels.tolist() == [-1 if i >= 80 else i % NCLASS for i in kept]
    assert json.loads(pathlib.Path(str(out) + '-map.json').read_text())['kept'] == kept


def test_filter_error_leaves_no_file(ml_data):
    build_dataset(str(ml_data), n_train=60)
    before = files_under(ml_data)
    proc = run_cli(
        [
            'filter_dataset.py',
            f'--filter_dataset={ml_data}/tiny-test.tfrecord',
            '--class_filter=12,13',
            '--save_name=out',
        ],
        ml_data,
        check=False,
    )
    assert_user_error(proc, 'holds no record with a label in 12,13')
    assert files_under(ml_data) == before


def test_filter_flags():
    assert filtering.parse_filter_lists('2,3,-1') == ([2, 3, -1], None)
    assert filtering.parse_filter_lists('2,3', '3,2,9') == ([2, 3], [3, 2, 9])
    for args, message in [
        (('2,x',), "--class_filter='2,x'"),
        (('2', '2,2'), 'lists a class twice'),
        (('2', '-1,2'), 'labels >= 0'),
        (('-2',), 'labels >= 0'),
        (('',), 'is empty'),
    ]:
        with pytest.raises(UserError, match=message):
            filtering.parse_filter_lists(*args)
    assert filtering.filter_output_path('/d/SSL/a.1@5-label.tfrecord', 'b.1@5-label') == '/d/SSL/b.1@5-label.tfrecord'
    assert filtering.filter_output_path('/d/a-test.tfrecord', '/e/f/b.tfrecord') == '/e/f/b.tfrecord'
    assert filtering.filter_output_path('/d/a-test.tfrecord', 'e/b') == 'e/b.tfrecord'


# --------------------------------------------------------------------------- inspect_dataset


def test_inspect_dataset(ml_data):
    path = write_train(ml_data, np.r_[np.arange(30) % 3, [-1] * 5])
    out = run_cli(['scripts/inspect_dataset.py', path], ml_data).stdout
    assert 'records: 35' in out
    assert 'per class: -1: 5, 0: 10, 1: 10, 2: 10' in out
    assert 'label range: -1..2' in out
    assert '16x16x1: 35' in out and 'channels: 1' in out
