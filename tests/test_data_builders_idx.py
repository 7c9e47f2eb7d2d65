"""MNIST and Fashion-MNIST from miniature upstream idx files: libml/data/builders/idx.py and the command."""

import collections
import gzip
import json
import os
import re

from libml.data.builders import idx, writer
from libml.data.builders.download import Sources
from libml.errors import UserError

import archives
import numpy as np
import pytest
from conftest import assert_user_error, read, run_cli

SCRIPT = 'scripts/create_datasets.py'
# Written out here, not taken from the code under test (the upstream README's list).
FASHION_NAMES = ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag',
                 'Ankle boot']  # fmt: skip
UNREACHABLE = 'http://127.0.0.1:9/'  # the discard port: nothing listens there


def items(built, split):
    """(images [N, H, W, C], labels [N]) of one split of a Built."""
    pairs, count = built.splits[split]
    pairs = list(pairs)
    assert len(pairs) == count
    return np.stack([p[0] for p in pairs]), np.array([p[1] for p in pairs])


def offline(tmp_path, archive_dir=None):
    """Sources with no reachable server, downloads under tmp_path."""
    return Sources(str(tmp_path / 'downloads'), archive_dir and str(archive_dir), UNREACHABLE, timeout=5)


# --------------------------------------------------------------------------- the command


def test_command_builds_fashion_mnist_and_mnist_from_archive_dir(tmp_path):
    ml_data = tmp_path / 'ml_data'
    fashion = archives.write_idx_dataset(tmp_path / 'src' / 'fashion_mnist', seed=5)
    digits = archives.write_idx_dataset(tmp_path / 'src' / 'mnist', counts=(('train', 7), ('test', 3)), seed=6)
    # On a machine with Debian's dataset-fashion-mnist this also shows that --archive_dir wins
    # over /usr/share/datasets/fashion-mnist (60,000 images there, 12 here).
    proc = run_cli([SCRIPT, 'fashion_mnist', 'mnist', f'--archive_dir={tmp_path / "src"}'], ml_data=ml_data)
    for name, expected in (('fashion_mnist', fashion), ('mnist', digits)):
        for split in ('train', 'test'):
            x, y = read(ml_data / f'{name}-{split}.tfrecord')
            assert x.shape == (len(expected[split][1]), 28, 28, 1)
            np.testing.assert_array_equal(x, expected[split][0])  # upstream order, pixel for pixel
            np.testing.assert_array_equal(y, expected[split][1])
    assert json.loads((ml_data / 'fashion_mnist_class_mappings.json').read_text()) == {
        str(i): n for i, n in enumerate(FASHION_NAMES)
    }
    assert json.loads((ml_data / 'mnist_class_mappings.json').read_text()) == {str(d): str(d) for d in range(10)}
    # Counts per class, e.g. the row '9 Ankle boot   <train count>   <test count>'.
    for i, title in ((9, '9 Ankle boot'), (0, '0 T-shirt/top')):
        train, test = (int((fashion[s][1] == i).sum()) for s in ('train', 'test'))
        assert re.search(rf'{re.escape(title)}\s+{train}\s+{test}\n', proc.stdout), proc.stdout
    assert re.search(r'\ntotal\s+12\s+5\n', proc.stdout)
    assert re.search(r'\ntotal\s+7\s+3\n', proc.stdout)


def test_command_truncated_file_is_one_line_error(tmp_path):
    ml_data = tmp_path / 'ml_data'
    source = tmp_path / 'src'
    archives.write_idx_dataset(source)
    path = source / 't10k-images-idx3-ubyte.gz'
    data = gzip.decompress(path.read_bytes())
    archives.write_gzip(path, data[: len(data) - 100])  # a valid gzip whose images stop early
    proc = run_cli([SCRIPT, 'mnist', f'--archive_dir={source}'], ml_data=ml_data, check=False)
    assert_user_error(proc, str(path), 'truncated')
    assert not ml_data.exists() or not any(f.is_file() for f in ml_data.iterdir())


def test_command_without_files_or_network_names_both_ways(tmp_path):
    proc = run_cli([SCRIPT, 'mnist', f'--download_url={UNREACHABLE}', '--download_timeout=5'],
                   ml_data=tmp_path, check=False)  # fmt: skip
    assert_user_error(proc, 'cannot download http://127.0.0.1:9/mnist/train-images-idx3-ubyte.gz',
                      '--archive_dir=DIR', 't10k-labels-idx1-ubyte.gz')  # fmt: skip


def test_command_both_from_one_archive_dir_needs_sub_folders(tmp_path):
    archives.write_idx_dataset(tmp_path / 'src')
    proc = run_cli([SCRIPT, 'fashion_mnist', 'mnist', f'--archive_dir={tmp_path / "src"}'],
                   ml_data=tmp_path / 'ml_data', check=False)  # fmt: skip
    assert_user_error(proc, 'share their upstream names', 'fashion_mnist/', 'mnist/')


# --------------------------------------------------------------------------- the library


def test_debian_folder_is_used_without_archive_dir(tmp_path):
    debian = tmp_path / 'debian'
    expected = archives.write_idx_dataset(debian)
    built = idx.fashion_mnist(offline(tmp_path), debian_dir=str(debian))  # no download attempted
    for split in ('train', 'test'):
        x, y = items(built, split)
        np.testing.assert_array_equal(x, expected[split][0])
        np.testing.assert_array_equal(y, expected[split][1])
    assert built.class_names == FASHION_NAMES


def test_archive_dir_wins_over_debian_folder(tmp_path):
    archives.write_idx_dataset(tmp_path / 'debian', seed=1)
    mine = archives.write_idx_dataset(tmp_path / 'mine', counts=(('train', 4), ('test', 2)), seed=2)
    built = idx.fashion_mnist(offline(tmp_path, tmp_path / 'mine'), debian_dir=str(tmp_path / 'debian'))
    np.testing.assert_array_equal(items(built, 'train')[0], mine['train'][0])
    np.testing.assert_array_equal(items(built, 'test')[1], mine['test'][1])


def test_archive_dir_missing_file_does_not_fall_back(tmp_path):
    archives.write_idx_dataset(tmp_path / 'debian')
    archives.write_idx_dataset(tmp_path / 'mine')
    os.remove(tmp_path / 'mine' / 't10k-labels-idx1-ubyte.gz')
    with pytest.raises(UserError, match=r't10k-labels-idx1-ubyte.gz not found in --archive_dir='):
        idx.fashion_mnist(offline(tmp_path, tmp_path / 'mine'), debian_dir=str(tmp_path / 'debian'))


def test_no_debian_no_archive_dir_no_network(tmp_path):
    with pytest.raises(UserError) as error:
        idx.fashion_mnist(offline(tmp_path), debian_dir=str(tmp_path / 'not_installed'))
    message = str(error.value)
    assert '\n' not in message
    assert 'cannot download http://127.0.0.1:9/fashion_mnist/train-images-idx3-ubyte.gz' in message
    assert 'apt-get install dataset-fashion-mnist' in message and '--archive_dir=DIR' in message
    for name in ('train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz', 't10k-images-idx3-ubyte.gz',
                 't10k-labels-idx1-ubyte.gz'):  # fmt: skip
        assert name in message
    assert not (tmp_path / 'downloads').exists()  # no empty downloads/fashion_mnist/ left behind


def test_downloaded_files_are_reused(tmp_path):
    """A file already in downloads/<name>/ is used as it is: nothing is fetched."""
    expected = archives.write_idx_dataset(tmp_path / 'downloads' / 'mnist', counts=(('train', 3), ('test', 2)))
    built = idx.mnist(offline(tmp_path))
    np.testing.assert_array_equal(items(built, 'train')[1], expected['train'][1])


def test_written_records_and_counts_per_class(tmp_path):
    expected = archives.write_idx_dataset(tmp_path / 'src', counts=(('train', 30), ('test', 10)))
    built = idx.mnist(offline(tmp_path, tmp_path / 'src'))
    counts = writer.write_dataset(str(tmp_path / 'out'), 'mnist', built)
    for split in ('train', 'test'):
        labels = expected[split][1]
        assert counts[split] == collections.Counter(labels.tolist())
        x, y = read(tmp_path / 'out' / f'mnist-{split}.tfrecord')
        np.testing.assert_array_equal(x, expected[split][0])
        np.testing.assert_array_equal(y, labels)
    table = writer.summary('mnist', built.class_names, counts)
    nine = (int((expected['train'][1] == 9).sum()), int((expected['test'][1] == 9).sum()))
    assert re.search(rf'\n9\s+{nine[0]}\s+{nine[1]}\n', table)
    assert sorted(os.listdir(tmp_path / 'out')) == ['mnist-test.tfrecord', 'mnist-train.tfrecord',
                                                   'mnist_class_mappings.json']  # fmt: skip


# --------------------------------------------------------------------------- the idx parser


def broken(tmp_path, split_file, data):
    """The miniature set in tmp_path/src with one file replaced by gzipped `data`; its path."""
    archives.write_idx_dataset(tmp_path / 'src')
    path = tmp_path / 'src' / split_file
    archives.write_gzip(path, data)
    return path


def build_src(tmp_path):
    return idx.mnist(offline(tmp_path, tmp_path / 'src'))


def test_read_idx_shapes_and_values(tmp_path):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    archives.write_gzip(tmp_path / 'x.gz', archives.idx_bytes(images, archives.IDX_IMAGES_MAGIC))
    np.testing.assert_array_equal(idx.read_idx(str(tmp_path / 'x.gz'), idx.IMAGES_MAGIC), images)
    # Header by hand: 00 00 08 03, then 2, 3, 4 as big-endian int32, then the 24 pixel bytes.
    raw = bytes([0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4]) + bytes(range(24))
    archives.write_gzip(tmp_path / 'y.gz', raw)
    np.testing.assert_array_equal(idx.read_idx(str(tmp_path / 'y.gz'), idx.IMAGES_MAGIC), images)


def test_truncated_data(tmp_path):
    data = archives.idx_bytes(np.zeros((12, 28, 28), np.uint8), archives.IDX_IMAGES_MAGIC)
    path = broken(tmp_path, 'train-images-idx3-ubyte.gz', data[:-1])
    with pytest.raises(UserError, match=re.escape(str(path)) + ' is truncated'):
        build_src(tmp_path)


def test_truncated_header(tmp_path):
    path = broken(tmp_path, 'train-labels-idx1-ubyte.gz', bytes([0, 0, 8, 1, 0, 0]))
    with pytest.raises(UserError, match=re.escape(str(path)) + ' is truncated'):
        build_src(tmp_path)


def test_truncated_gzip_stream(tmp_path):
    archives.write_idx_dataset(tmp_path / 'src')
    path = tmp_path / 'src' / 'train-images-idx3-ubyte.gz'
    path.write_bytes(path.read_bytes()[:-200])  # cut inside the compressed stream
    with pytest.raises(UserError, match=re.escape(f'cannot read {path}')) as error:
        build_src(tmp_path)
    assert 'gzip' in str(error.value)


def test_not_gzip(tmp_path):
    archives.write_idx_dataset(tmp_path / 'src')
    path = tmp_path / 'src' / 't10k-labels-idx1-ubyte.gz'
    path.write_bytes(b'<html>not found</html>')
    with pytest.raises(UserError, match=re.escape(f'cannot read {path}')):
        build_src(tmp_path)


def test_wrong_magic(tmp_path):
    # A labels file where the images file belongs.
    data = archives.idx_bytes(np.zeros(12, np.uint8), archives.IDX_LABELS_MAGIC)
    path = broken(tmp_path, 'train-images-idx3-ubyte.gz', data)
    with pytest.raises(UserError, match=re.escape(f'{path} has magic number 0x00000801, expected 0x00000803')):
        build_src(tmp_path)


def test_count_mismatch(tmp_path):
    path = broken(tmp_path, 'train-labels-idx1-ubyte.gz',
                  archives.idx_bytes(np.zeros(11, np.uint8), archives.IDX_LABELS_MAGIC))  # fmt: skip
    with pytest.raises(UserError, match='holds 12 images but ' + re.escape(str(path)) + ' holds 11 labels'):
        build_src(tmp_path)


def test_label_out_of_range_and_trailing_bytes(tmp_path):
    labels = np.zeros(12, np.uint8)
    labels[3] = 10
    path = broken(tmp_path, 'train-labels-idx1-ubyte.gz', archives.idx_bytes(labels, archives.IDX_LABELS_MAGIC))
    with pytest.raises(UserError, match=re.escape(str(path)) + ' has labels outside 0..9'):
        build_src(tmp_path)
    path = broken(tmp_path, 'train-labels-idx1-ubyte.gz',
                  archives.idx_bytes(np.zeros(12, np.uint8), archives.IDX_LABELS_MAGIC) + b'\0')  # fmt: skip
    with pytest.raises(UserError, match=re.escape(str(path)) + ' is longer than its header says'):
        build_src(tmp_path)


def test_archive_dir_sub_folder_lookup(tmp_path):
    """In --archive_dir a file may sit in the dataset's sub-folder (preferred) or directly in it."""
    (tmp_path / 'a' / 'mnist').mkdir(parents=True)
    (tmp_path / 'a' / 'f.gz').write_bytes(b'top')
    (tmp_path / 'a' / 'g.gz').write_bytes(b'top')
    (tmp_path / 'a' / 'mnist' / 'g.gz').write_bytes(b'sub')
    sources = offline(tmp_path, tmp_path / 'a')
    assert sources.fetch('f.gz', UNREACHABLE, folder='mnist') == str(tmp_path / 'a' / 'f.gz')
    assert sources.fetch('g.gz', UNREACHABLE, folder='mnist') == str(tmp_path / 'a' / 'mnist' / 'g.gz')
    with pytest.raises(UserError, match='h.gz not found in --archive_dir=.* nor in its mnist/ sub-folder'):
        sources.fetch('h.gz', UNREACHABLE, folder='mnist')
