"""create_split, make_aug_copy, filter_dataset and inspect_dataset: pure logic in-process, the
commands end to end on tiny record files (few subprocesses: each pays TensorFlow's import)."""

import json
import os

import numpy as np
import pytest
from absl import flags

from conftest import run_cli
from libml import data, splits
from libml.utils import UserError
from test_data import NCLASS, build_dataset, image_for, index_of, take_images

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


def records(path):
    """(images uint8 [N, H, W, 1], labels [N]) of a record file."""
    pairs = list(data.read_records(str(path)))
    return np.stack([data.decode_png(p) for p, _ in pairs]), np.array([label for _, label in pairs])


def write_train(root, labels, name='tiny'):
    """<name>-train.tfrecord with image_for(i) and labels[i]; returns its path."""
    path = data.train_path(name, str(root))
    data.write_records(path, [(data.encode_png(image_for(i)), v) for i, v in enumerate(labels)])
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
    kept, new = splits.relabel(labels, [0, 2, 5])
    assert kept.tolist() == [0, 1, 2, 5, 6, 7] and new.tolist() == [2, 0, 5, 2, 0, 5]
    kept, new = splits.relabel(labels, [0, 2, 5], label_order=[5, 2, 3])
    assert new.tolist() == [1, -1, 0, 1, -1, 0]
    order, capacity = splits.heldout_first(kept, new, valid_capacity=4)
    assert kept[order].tolist() == [0, 2, 1, 5, 6, 7] and capacity == 2


def test_choose_valid_size():
    assert splits.choose_valid_size(50) == 50
    assert splits.choose_valid_size(300, 100) == 100
    assert splits.choose_valid_size(300, 0) == 0
    with pytest.raises(UserError, match='--valid_size=51'):
        splits.choose_valid_size(50, 51)


def test_describe_record_file(tmp_path):
    assert splits.describe_record_file(tmp_path / 'SSL' / 'cifar6_m0.1@250-unlabel.tfrecord') == dict(
        root=str(tmp_path), name='cifar6_m0', part='unlabel', stem='cifar6_m0.1@250')
    assert splits.describe_record_file(tmp_path / 'cifar6-test.tfrecord') == dict(
        root=str(tmp_path), name='cifar6', part='test', stem=None)
    assert splits.describe_record_file(tmp_path / 'odd.name.tfrecord') is None


def test_augmented_stream_keeps_labels_and_is_seeded(ml_data):
    path = write_train(ml_data, np.r_[np.arange(20) % NCLASS, [-1] * 4])
    stream = splits.augmented_stream(path, 4, 20, 3, 'svhn', 7, (16, 16, 1), buffer=8)
    pairs = list(stream.as_numpy_iterator())
    indices = [index_of(data.decode_png(png)) for png, _ in pairs]
    assert sorted(indices) == sorted(list(range(4, 24)) * 3)
    assert [label for _, label in pairs] == [i % NCLASS if i < 20 else -1 for i in indices]
    assert pairs == list(splits.augmented_stream(path, 4, 20, 3, 'svhn', 7, (16, 16, 1), buffer=8)
                         .as_numpy_iterator())
    changed = sum(not np.array_equal(data.decode_png(png), image_for(i)) for (png, _), i in zip(pairs, indices))
    assert changed > len(pairs) // 2


# --------------------------------------------------------------------------- create_split

def test_create_split_command(ml_data):
    labels = np.arange(200) % NCLASS
    train = write_train(ml_data, labels)
    prefix = ml_data / 'SSL' / 'tiny'
    run_cli(['scripts/create_split.py', '--seed=1', '--label_split_size=50', prefix, train], ml_data)
    label_file, unlabel_file, map_file = data.split_paths('tiny.1@50', str(ml_data))
    expected = splits.make_split(labels, 50, 1)
    images, got = records(label_file)
    assert np.bincount(got).tolist() == [5] * NCLASS
    assert [index_of(x) for x in images] == expected['label'].tolist()
    assert [index_of(x) for x in records(unlabel_file)[0]] == expected['unlabel'].tolist()
    split_map = json.load(open(map_file))
    assert split_map['valid_capacity'] == 150 and split_map['label'] == expected['label'].tolist()
    assert split_map['label_counts'] == {str(c): 5 for c in range(NCLASS)}

    before = {p: open(p, 'rb').read() for p in (label_file, unlabel_file, map_file)}
    proc = run_cli(['scripts/create_split.py', '--seed=1', '--label_split_size=50', prefix, train], ml_data,
                   check=False)
    assert_user_error(proc, 'already exists', '--overwrite')
    assert {p: open(p, 'rb').read() for p in before} == before
    assert not [f for f in files_under(ml_data) if f.endswith('.tmp')]


def test_create_split_custom_label_size(ml_data):
    """The README's custom form: labelled images first, then unlabelled ones (-1)."""
    labels = np.r_[np.arange(120) % NCLASS, [-1] * 40]
    train = write_train(ml_data, labels, name='mydataset')
    data.write_records(data.test_path('mydataset', str(ml_data)), [(data.encode_png(image_for(0)), 0)])
    run_cli(['./scripts/create_split.py', '--seed=1', '--label_split_size=100', '--label_size=120',
             ml_data / 'SSL' / 'mydataset', train], ml_data)
    ds = data.DataSet.from_name('mydataset.1@100-20')
    images, valid_labels = take_images(ds.eval_valid(64), 100)
    assert len(images) == 20 and np.bincount(valid_labels).tolist() == [2] * NCLASS
    assert all(index_of(x) % NCLASS == y and index_of(x) < 120 for x, y in zip(images, valid_labels))
    assert ds.unlabel_count == 40
    with pytest.raises(UserError, match='exceeds the 20 held-out'):
        data.DataSet.from_name('mydataset.1@100-21')


def test_create_split_error_leaves_no_file(ml_data):
    write_train(ml_data, np.arange(200) % NCLASS)
    before = files_under(ml_data)
    proc = run_cli(['scripts/create_split.py', '--seed=2', '--label_split_size=300', ml_data / 'SSL' / 'tiny',
                    ml_data / 'tiny-train.tfrecord'], ml_data, check=False)
    assert_user_error(proc, 'exceeds the 200 labelled records')
    assert files_under(ml_data) == before


def test_check_stem():
    assert splits.check_stem('/data/SSL/my_data2') == 'my_data2'
    for bad in ('/data/SSL/ti-ny', 'SSL/a.b', 'SSL/'):
        with pytest.raises(UserError, match='must be a dataset name'):
            splits.check_stem(bad)


# --------------------------------------------------------------------------- make_aug_copy

def test_make_aug_copy(ml_data):
    split = build_dataset(str(ml_data), n_train=220, n_unlabelled=20, label_size=200)  # 150 held out + 20
    names = {str(i): f'class{i}' for i in range(NCLASS)}
    json.dump(names, open(data.class_mapping_path('tiny', str(ml_data)), 'w'))
    run_cli(['scripts/make_aug_copy.py', '--aug_dataset=tiny.1@50', '--aug_copy=3', '--augment=svhn',
             '--unlabel_size=20'], ml_data)
    label_file, unlabel_file, map_file = data.split_paths('tiny_aug3.1@50', str(ml_data))
    source = data.split_paths('tiny.1@50', str(ml_data))
    assert open(label_file, 'rb').read() == open(source[0], 'rb').read()
    images, labels = records(unlabel_file)
    assert len(labels) == 150 + 3 * 20
    head = [index_of(x) for x in images[:150]]
    assert head == split['unlabel'][:150].tolist()
    np.testing.assert_array_equal(images[:150], records(source[1])[0][:150])
    tail = [index_of(x) for x in images[150:]]
    assert sorted(tail) == sorted(split['unlabel'][150:].tolist() * 3)
    assert labels.tolist() == [i % NCLASS if i < 200 else -1 for i in head + tail]
    assert json.load(open(map_file))['valid_capacity'] == 150
    assert json.load(open(data.class_mapping_path('tiny_aug3', str(ml_data)))) == names
    test_copy = data.test_path('tiny_aug3', str(ml_data))
    assert open(test_copy, 'rb').read() == open(data.test_path('tiny', str(ml_data)), 'rb').read()

    ds = data.DataSet.from_name('tiny_aug3.1@50-100')
    valid, valid_labels = take_images(ds.eval_valid(64), 1000)
    assert [index_of(x) for x in valid] == split['unlabel'][:100].tolist()
    assert valid_labels.tolist() == [i % NCLASS for i in split['unlabel'][:100]]
    assert ds.class_names[3] == 'class3' and ds.unlabel_count == 3 * 20  # the clean head is never trained on

    before = {f: open(ml_data / f, 'rb').read() for f in files_under(ml_data)}
    proc = run_cli(['scripts/make_aug_copy.py', '--aug_dataset=tiny.1@50', '--aug_copy=2', '--augment=cutout',
                    '--unlabel_size=170'], ml_data, check=False)
    assert_user_error(proc, '--unlabel_size=170', 'holds 20 unlabelled training')
    assert {f: open(ml_data / f, 'rb').read() for f in files_under(ml_data)} == before


def test_make_aug_copy_of_a_benchmark_split_augments_everything_and_keeps_a_clean_head(ml_data):
    split = build_dataset(str(ml_data), n_train=150, size=50)  # no --label_size: 100 held-out records
    run_cli(['scripts/make_aug_copy.py', '--aug_dataset=tiny.1@50', '--aug_copy=2', '--augment=cifar10',
             '--unlabel_size=100'], ml_data)
    images, labels = records(data.split_paths('tiny_aug2.1@50', str(ml_data))[1])
    assert len(labels) == 100 + 2 * 100
    assert sorted(index_of(x) for x in images[100:]) == sorted(split['unlabel'].tolist() * 2)
    ds = data.DataSet.from_name('tiny_aug2.1@50-60')
    valid, valid_labels = take_images(ds.eval_valid(64), 1000)
    assert [index_of(x) for x in valid] == split['unlabel'][:60].tolist()
    assert valid_labels.tolist() == [i % NCLASS for i in split['unlabel'][:60]]
    assert ds.unlabel_count == 200


# --------------------------------------------------------------------------- filter_dataset

def test_out_of_distribution_workflow(ml_data):
    """The README's mismatch recipe on a 10-class split, renumbered to a 6-class dataset."""
    split = build_dataset(str(ml_data), n_train=200, size=60)  # 140 held-out labelled records
    root, ssl = ml_data, ml_data / 'SSL'
    json.dump({str(i): f'c{i}' for i in range(NCLASS)}, open(data.class_mapping_path('tiny', str(root)), 'w'))
    order = '--label_order=2,3,4,5,6,7'
    run_cli(['filter_dataset.py', '--class_filter=2,3,4,5,6,7', order, f'--filter_dataset={ssl}/tiny.1@60-label.tfrecord',
             f'--save_name={ssl}/tiny6_mm25.1@60-label.tfrecord'], ml_data)
    run_cli(['./filter_dataset.py', '--class_filter=0,5,6,7', order, f'--filter_dataset={ssl}/tiny.1@60-unlabel.tfrecord',
             f'--save_name={ssl}/tiny6_mm25.1@60-unlabel.tfrecord'], ml_data)
    run_cli(['filter_dataset.py', '--class_filter=2,3,4,5,6,7', order, f'--filter_dataset={root}/tiny-test.tfrecord',
             '--save_name=tiny6_mm25-test'], ml_data)

    images, labels = records(ssl / 'tiny6_mm25.1@60-unlabel.tfrecord')
    original = np.array([index_of(x) % NCLASS for x in images])
    assert sorted(set(original.tolist())) == [0, 5, 6, 7] and len(labels) == 56
    assert labels.tolist() == [{5: 3, 6: 4, 7: 5}.get(c, -1) for c in original]
    split_map = json.load(open(ssl / 'tiny6_mm25.1@60-map.json'))
    assert split_map['valid_capacity'] == 42  # 14 held-out images each of classes 5, 6 and 7
    assert split_map['label'] == [i for i in split['label'].tolist() if i % NCLASS in range(2, 8)]
    assert json.load(open(root / 'tiny6_mm25_class_mappings.json')) == {str(i): f'c{i + 2}' for i in range(6)}
    assert os.path.exists(root / 'tiny6_mm25-test-map.json')

    ds = data.DataSet.from_name('tiny6_mm25.1@60-42', augment='svhn')
    assert ds.nclass == 6 and ds.class_names == ['c2', 'c3', 'c4', 'c5', 'c6', 'c7']
    valid, valid_labels = take_images(ds.eval_valid(64), 1000)
    assert len(valid) == 42 and all(index_of(x) % NCLASS == y + 2 for x, y in zip(valid, valid_labels))
    train, train_labels = take_images(ds.train_labelled(6, seed=1), 36)
    assert all(index_of(x) % NCLASS == y + 2 for x, y in zip(train, train_labels))
    test, test_labels = take_images(ds.eval_test(64), 1000)
    assert len(test) == 24 and all(index_of(x) % NCLASS == y + 2 for x, y in zip(test, test_labels))
    assert ds.unlabel_count == 14
    with pytest.raises(UserError, match='exceeds the 42 held-out'):
        data.DataSet.from_name('tiny6_mm25.1@60-43')


def test_filter_plain_file_to_a_path(ml_data, tmp_path):
    build_dataset(str(ml_data), n_train=100, n_unlabelled=20)
    out = tmp_path / 'elsewhere' / 'small'
    run_cli(['filter_dataset.py', '--class_filter=1,3,-1', f'--filter_dataset={ml_data}/tiny-train.tfrecord',
             f'--save_name={out}'], ml_data)
    images, labels = records(str(out) + '.tfrecord')
    kept = [i for i in range(100) if i >= 80 or i % NCLASS in (1, 3)]
    assert [index_of(x) for x in images] == kept
    assert labels.tolist() == [-1 if i >= 80 else i % NCLASS for i in kept]
    assert json.load(open(str(out) + '-map.json'))['kept'] == kept


def test_filter_error_leaves_no_file(ml_data):
    build_dataset(str(ml_data), n_train=60)
    before = files_under(ml_data)
    proc = run_cli(['filter_dataset.py', f'--filter_dataset={ml_data}/tiny-test.tfrecord', '--class_filter=12,13',
                    '--save_name=out'], ml_data, check=False)
    assert_user_error(proc, 'holds no record with a label in 12,13')
    assert files_under(ml_data) == before


def test_filter_flags():
    assert splits.parse_filter_lists('2,3,-1') == ([2, 3, -1], None)
    assert splits.parse_filter_lists('2,3', '3,2,9') == ([2, 3], [3, 2, 9])
    for args, message in [(('2,x',), "--class_filter='2,x'"), (('2', '2,2'), 'lists a class twice'),
                          (('2', '-1,2'), 'labels >= 0'), (('-2',), 'labels >= 0'), (('',), 'is empty')]:
        with pytest.raises(UserError, match=message):
            splits.parse_filter_lists(*args)
    assert splits.filter_output_path('/d/SSL/a.1@5-label.tfrecord', 'b.1@5-label') == '/d/SSL/b.1@5-label.tfrecord'
    assert splits.filter_output_path('/d/a-test.tfrecord', '/e/f/b.tfrecord') == '/e/f/b.tfrecord'
    assert splits.filter_output_path('/d/a-test.tfrecord', 'e/b') == 'e/b.tfrecord'


# --------------------------------------------------------------------------- inspect_dataset

def test_inspect_dataset(ml_data):
    path = write_train(ml_data, np.r_[np.arange(30) % 3, [-1] * 5])
    out = run_cli(['scripts/inspect_dataset.py', path], ml_data).stdout
    assert 'records: 35' in out
    assert 'per class: -1: 5, 0: 10, 1: 10, 2: 10' in out
    assert 'label range: -1..2' in out
    assert '16x16x1: 35' in out and 'channels: 1' in out
