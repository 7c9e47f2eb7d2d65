"""scripts/create_datasets.py on miniature upstream archives and image folders, and libml/data/image_files.py."""

import http.server
import json
import os
import re
import subprocess
import sys
import tarfile
import threading

import archives
import numpy as np
from conftest import ROOT, assert_user_error, read, run_cli
from PIL import Image
from sklearn.datasets import load_digits

SCRIPT = 'scripts/create_datasets.py'


# --------------------------------------------------------------------------- helpers


def build(ml_data, *args, check=True):
    return run_cli([SCRIPT, *args], ml_data=ml_data, check=check)


def outputs(ml_data):
    """Names of the files directly in $ML_DATA (temporary files included)."""
    return sorted(f for f in os.listdir(ml_data) if os.path.isfile(os.path.join(ml_data, f)))


def save(path, array):
    """Writes a uint8 [H, W] (grayscale) or [H, W, 3] image; the format follows the extension."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(array).save(path)
    return array


def noise(seed, shape):
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


def truncated_png(path, seed=0):
    """A PNG whose header is fine but whose pixel data is cut in half."""
    save(path, noise(seed, (16, 16, 3)))
    with open(path, 'rb') as f:
        data = f.read()
    with open(path, 'wb') as f:
        f.write(data[: len(data) // 2])


def custom_args(root, *extra):
    return ['custom', '--name=mine', f'--traindir={root}/train', f'--testdir={root}/test', *extra]


# --------------------------------------------------------------------------- upstream archives


def test_cifar10_matlab_archive(ml_data, tmp_path):
    expected = archives.write_cifar10(tmp_path)
    build(ml_data, 'cifar10', f'--archive_dir={tmp_path}')
    for split in ('train', 'test'):
        x, y = read(ml_data / f'cifar10-{split}.tfrecord')
        np.testing.assert_array_equal(x, expected[split][0])
        np.testing.assert_array_equal(y, expected[split][1])
    assert len(x) == 3 and len(read(ml_data / 'cifar10-train.tfrecord')[1]) == 10
    # Byte 1024 * c + 32 * row + col of a MATLAB row is channel c of pixel (row, col).
    train_x, _ = read(ml_data / 'cifar10-train.tfrecord')
    row = archives.cifar_rows(expected['train'][0][:1])[0]
    assert train_x[0, 5, 7, 2] == row[1024 * 2 + 32 * 5 + 7]
    mapping = json.loads((ml_data / 'cifar10_class_mappings.json').read_text())
    assert mapping == {str(i): n for i, n in enumerate(archives.CIFAR10_NAMES)}


def test_cifar100_fine_labels(ml_data, tmp_path):
    expected = archives.write_cifar100(tmp_path)
    build(ml_data, 'cifar100', f'--archive_dir={tmp_path}')
    for split in ('train', 'test'):
        x, y = read(ml_data / f'cifar100-{split}.tfrecord')
        np.testing.assert_array_equal(x, expected[split][0])
        np.testing.assert_array_equal(y, expected[split][1])
    mapping = json.loads((ml_data / 'cifar100_class_mappings.json').read_text())
    assert len(mapping) == 100 and mapping['99'] == 'fine99'


def test_default_builds_cifar10_and_svhn_with_label_10_as_digit_0(ml_data, tmp_path):
    archives.write_cifar10(tmp_path)
    expected = archives.write_svhn(tmp_path)
    proc = build(ml_data, f'--archive_dir={tmp_path}')
    for split in ('train', 'test', 'extra'):
        x, y = read(ml_data / f'svhn-{split}.tfrecord')
        np.testing.assert_array_equal(x, expected[split][0])
        np.testing.assert_array_equal(y, expected[split][1])
        assert y[0] == 0  # stored upstream as 10
    assert (ml_data / 'cifar10-train.tfrecord').exists()
    assert json.loads((ml_data / 'svhn_class_mappings.json').read_text())['0'] == '0'
    assert 'svhn: images per class' in proc.stdout


def test_stl10_binary_column_major(ml_data, tmp_path):
    train_x = np.zeros((2, 96, 96, 3), np.uint8)
    expected = archives.write_stl10(tmp_path, train_x=train_x)
    # Patch one byte by hand: channel 0 (red), column 70, row 5 of image 0 is at 0*96*96 + 70*96 + 5.
    folder = tmp_path / 'patched'
    folder.mkdir()
    with tarfile.open(tmp_path / 'stl10_binary.tar.gz') as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
    data = bytearray(members['stl10_binary/train_X.bin'])
    data[70 * 96 + 5] = 255
    members['stl10_binary/train_X.bin'] = bytes(data)
    archives.write_tar_gz(folder / 'stl10_binary.tar.gz', members)

    build(ml_data, 'stl10', f'--archive_dir={folder}')
    x, y = read(ml_data / 'stl10-train.tfrecord')
    assert x.shape == (2, 96, 96, 3)
    assert x[0, 5, 70, 0] == 255 and x.sum() == 255  # row 5, column 70, red; nothing else
    np.testing.assert_array_equal(y, expected['train'][1])
    test_x, test_y = read(ml_data / 'stl10-test.tfrecord')
    np.testing.assert_array_equal(test_x, expected['test'][0])
    np.testing.assert_array_equal(test_y, expected['test'][1])
    unlabeled_x, unlabeled_y = read(ml_data / 'stl10-unlabeled.tfrecord')
    np.testing.assert_array_equal(unlabeled_x, expected['unlabeled'][0])
    assert list(unlabeled_y) == [-1, -1]
    assert json.loads((ml_data / 'stl10_folds.json').read_text())['folds'] == expected['folds']
    assert json.loads((ml_data / 'stl10_class_mappings.json').read_text())['7'] == 'monkey'


def test_digits_bundled(ml_data):
    build(ml_data, 'digits')
    train_x, train_y = read(ml_data / 'digits-train.tfrecord')
    test_x, test_y = read(ml_data / 'digits-test.tfrecord')
    assert train_x.shape == (1297, 16, 16, 1) and test_x.shape == (500, 16, 16, 1)
    assert set(train_y) == set(test_y) == set(range(10))
    assert train_x.max() == 255 and train_x.min() == 0  # 0..16 scaled to the full range
    # Every record is one of scikit-learn's images scaled to 0..255 and upsampled bilinearly;
    # together the two files hold each of the 1,797 images once, with its own label.
    digits = load_digits()
    scaled = np.round(digits.images * 255 / 16).astype(np.uint8)
    index = {}
    for i, image in enumerate(scaled):
        index.setdefault(np.asarray(Image.fromarray(image).resize((16, 16), Image.BILINEAR)).tobytes(), []).append(i)
    found = [index[image.tobytes()] for image in np.concatenate([train_x, test_x])[:, :, :, 0]]
    assert all(digits.target[i[0]] == label for i, label in zip(found, np.concatenate([train_y, test_y])))
    assert len({i for group in found for i in group}) == 1797
    mapping = json.loads((ml_data / 'digits_class_mappings.json').read_text())
    assert mapping == {str(d): str(d) for d in range(10)}


class _RangeServer(http.server.BaseHTTPRequestHandler):
    """Serves one file at /<name>, honouring `Range: bytes=N-`; records the Range headers seen."""

    files, ranges = {}, []

    def do_GET(self):
        data = self.files.get(self.path.lstrip('/'))
        if data is None:
            self.send_error(404)
            return
        header = self.headers.get('Range')
        self.ranges.append(header)
        start = int(re.match(r'bytes=(\d+)-', header)[1]) if header else 0
        self.send_response(206 if header else 200)
        if header:
            self.send_header('Content-Range', f'bytes {start}-{len(data) - 1}/{len(data)}')
        self.send_header('Content-Length', str(len(data) - start))
        self.end_headers()
        self.wfile.write(data[start:])

    def log_message(self, *args):
        pass


def test_download_resumes_a_partial_file(ml_data, tmp_path):
    expected = archives.write_cifar10(tmp_path)
    data = (tmp_path / 'cifar-10-matlab.tar.gz').read_bytes()
    downloads = ml_data / 'downloads'
    downloads.mkdir()
    half = len(data) // 2
    (downloads / 'cifar-10-matlab.tar.gz.part').write_bytes(data[:half])
    _RangeServer.files, _RangeServer.ranges = {'cifar-10-matlab.tar.gz': data}, []
    server = http.server.HTTPServer(('127.0.0.1', 0), _RangeServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        build(ml_data, 'cifar10', f'--download_url=http://127.0.0.1:{server.server_port}/')
    finally:
        server.shutdown()
    assert _RangeServer.ranges == [f'bytes={half}-']
    assert (downloads / 'cifar-10-matlab.tar.gz').read_bytes() == data
    assert not (downloads / 'cifar-10-matlab.tar.gz.part').exists()
    np.testing.assert_array_equal(read(ml_data / 'cifar10-test.tfrecord')[0], expected['test'][0])


def test_no_network_and_no_archive_dir(ml_data):
    proc = build(ml_data, 'cifar10', '--download_url=http://127.0.0.1:9/', '--download_timeout=5', check=False)
    assert_user_error(proc, 'cannot download http://127.0.0.1:9/cifar-10-matlab.tar.gz', '--archive_dir')
    assert outputs(ml_data) == []


def test_archive_missing_from_archive_dir(ml_data, tmp_path):
    proc = build(ml_data, 'svhn', f'--archive_dir={tmp_path}', check=False)
    assert_user_error(proc, 'train_32x32.mat not found in --archive_dir')


def test_unknown_dataset(ml_data):
    assert_user_error(build(ml_data, 'imagenet', check=False), "unknown dataset 'imagenet'", 'cifar10')


# --------------------------------------------------------------------------- custom folders


def test_custom_class_folders_and_flat_names_seed_readme_form(ml_data):
    root = ml_data / 'mydataset'
    cat = save(f'{root}/train/cat/a.png', noise(1, (8, 8, 3)))
    save(f'{root}/train/cat/b.jpg', np.full((8, 8, 3), (200, 100, 50), np.uint8))
    gray_dog = save(f'{root}/train/dog/c.png', noise(2, (8, 8)))
    hot_dog = save(f'{root}/train/5_hot_dog.png', noise(3, (8, 8, 3)))
    save(f'{root}/test/0_cat.png', noise(4, (8, 8, 3)))
    save(f'{root}/test/1_hot_dog.jpg', noise(5, (8, 8, 3)))
    save(f'{root}/test/dog/x.png', noise(6, (8, 8)))
    unlabelled = [
        save(f'{root}/unlabeled/7_dog.png', noise(7, (8, 8, 3))),
        save(f'{root}/unlabeled/cat/u.png', noise(8, (8, 8))),
        save(f'{root}/unlabeled/noclass.png', noise(9, (8, 8, 3))),
    ]
    # Exactly the seed README's command: the script run as an executable, flags after `custom`.
    env = dict(
        os.environ,
        ML_DATA=str(ml_data),
        CUDA_VISIBLE_DEVICES='',
        PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ['PATH'],
    )
    env.pop('PYTHONPATH', None)
    proc = subprocess.run(
        [
            './scripts/create_datasets.py',
            'custom',
            '--name',
            'mydataset',
            '--traindir',
            f'{root}/train/',
            '--unlabeldir',
            f'{root}/unlabeled/',
            '--testdir',
            f'{root}/test/',
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr

    x, y = read(ml_data / 'mydataset-train.tfrecord')
    # Sorted paths: 5_hot_dog.png, cat/a.png, cat/b.jpg, dog/c.png, then the unlabelled ones.
    assert list(y) == [2, 0, 0, 1, -1, -1, -1]
    assert x.shape == (7, 8, 8, 3)  # some images are RGB, so all become RGB
    np.testing.assert_array_equal(x[0], hot_dog)
    np.testing.assert_array_equal(x[1], cat)
    assert np.abs(x[2].astype(int) - (200, 100, 50)).max() <= 3  # jpeg
    np.testing.assert_array_equal(x[3], np.repeat(gray_dog[:, :, None], 3, axis=2))
    np.testing.assert_array_equal(x[4], unlabelled[0])
    np.testing.assert_array_equal(x[5], np.repeat(unlabelled[1][:, :, None], 3, axis=2))
    _, test_y = read(ml_data / 'mydataset-test.tfrecord')
    assert list(test_y) == [0, 2, 1]
    mapping = json.loads((ml_data / 'mydataset_class_mappings.json').read_text())
    assert mapping == {'0': 'cat', '1': 'dog', '2': 'hot_dog'}
    assert re.search(r'2 hot_dog\s+1\s+1\n', proc.stdout)
    assert re.search(r'unlabelled \(-1\)\s+3\s+0\n', proc.stdout)


def test_custom_all_grayscale_mixed_sizes_resized(ml_data):
    root = ml_data / 'src'
    save(f'{root}/train/a/1.png', np.full((4, 4), 10, np.uint8))
    save(f'{root}/train/b/2.bmp', noise(1, (6, 9)))
    save(f'{root}/test/a/3.png', np.full((5, 5), 200, np.uint8))
    build(ml_data, *custom_args(root, '--img_size=8'))
    x, y = read(ml_data / 'mine-train.tfrecord')
    assert x.shape == (2, 8, 8, 1) and list(y) == [0, 1]
    assert (x[0] == 10).all()
    test_x, _ = read(ml_data / 'mine-test.tfrecord')
    assert test_x.shape == (1, 8, 8, 1) and (test_x == 200).all()


def test_custom_mixed_sizes_need_img_size(ml_data):
    root = ml_data / 'src'
    save(f'{root}/train/a/1.png', noise(1, (4, 4, 3)))
    save(f'{root}/train/b/2.png', noise(2, (6, 6, 3)))
    save(f'{root}/test/a/3.png', noise(3, (4, 4, 3)))
    assert_user_error(build(ml_data, *custom_args(root), check=False), 'differ in size', '--img_size')
    assert outputs(ml_data) == []


def test_custom_test_class_unknown_to_train(ml_data):
    root = ml_data / 'src'
    save(f'{root}/train/a/1.png', noise(1, (4, 4, 3)))
    save(f'{root}/test/zebra/2.png', noise(2, (4, 4, 3)))
    assert_user_error(build(ml_data, *custom_args(root), check=False), 'zebra', 'zebra/2.png')


def test_custom_corrupt_image_names_it_and_leaves_no_output(ml_data):
    root = ml_data / 'src'
    save(f'{root}/train/a/1.png', noise(1, (16, 16, 3)))
    truncated_png(f'{root}/train/b/2.png')
    save(f'{root}/test/a/3.png', noise(3, (16, 16, 3)))
    proc = build(ml_data, *custom_args(root), check=False)
    assert_user_error(proc, f'{root}/train/b/2.png', '--skip_bad_images')
    assert outputs(ml_data) == []  # no record, mapping or temporary file


def test_custom_skip_bad_images(ml_data):
    root = ml_data / 'src'
    good = save(f'{root}/train/a/1.png', noise(1, (16, 16, 3)))
    truncated_png(f'{root}/train/a/2.png')
    (root / 'train' / 'b').mkdir()
    (root / 'train' / 'b' / 'junk.jpg').write_bytes(b'not an image')
    save(f'{root}/train/b/ok.png', noise(2, (16, 16, 3)))
    save(f'{root}/test/a/3.png', noise(3, (16, 16, 3)))
    proc = build(ml_data, *custom_args(root, '--skip_bad_images'))
    x, y = read(ml_data / 'mine-train.tfrecord')
    assert list(y) == [0, 1]
    np.testing.assert_array_equal(x[0], good)
    assert 'skipped 2 unreadable image(s)' in proc.stdout


def test_custom_missing_or_empty_folder(ml_data):
    root = ml_data / 'src'
    save(f'{root}/train/a/1.png', noise(1, (4, 4, 3)))
    assert_user_error(build(ml_data, *custom_args(root), check=False), f'--testdir={root}/test', 'not found')
    (root / 'test' / 'a').mkdir(parents=True)
    (root / 'test' / 'a' / 'notes.txt').write_text('no images here')
    assert_user_error(build(ml_data, *custom_args(root), check=False), 'holds no images')


def test_custom_needs_name(ml_data):
    assert_user_error(build(ml_data, 'custom', '--traindir=x', '--testdir=y', check=False), '--name')


def test_custom_existing_outputs_need_overwrite(ml_data):
    root = ml_data / 'src'
    image = save(f'{root}/train/a/1.png', noise(1, (4, 4, 3)))
    save(f'{root}/test/a/2.png', noise(2, (4, 4, 3)))
    (ml_data / 'mine-train.tfrecord').write_bytes(b'keep me')
    proc = build(ml_data, *custom_args(root), check=False)
    assert_user_error(proc, 'mine-train.tfrecord already exists', '--overwrite')
    assert (ml_data / 'mine-train.tfrecord').read_bytes() == b'keep me'
    assert outputs(ml_data) == ['mine-train.tfrecord']
    build(ml_data, *custom_args(root, '--overwrite'))
    np.testing.assert_array_equal(read(ml_data / 'mine-train.tfrecord')[0][0], image)


def test_custom_balancing(ml_data):
    root = ml_data / 'src'
    ramp = np.tile(np.arange(0, 240, 15, dtype=np.uint8)[None, :, None], (16, 1, 3))
    few = save(f'{root}/train/few/0.png', ramp)
    many = [save(f'{root}/train/many/{i}.png', noise(i, (16, 16, 3))) for i in range(5)]
    for i in range(3):
        save(f'{root}/unlabeled/many/{i}.png', noise(10 + i, (16, 16, 3)))
    save(f'{root}/unlabeled/few/0.png', noise(20, (16, 16, 3)))
    save(f'{root}/test/few/0.png', noise(30, (16, 16, 3)))
    build(
        ml_data,
        *custom_args(root, f'--unlabeldir={root}/unlabeled', '--train_balance=3', '--unlabel_balance=2', '--seed=1'),
    )
    x, y = read(ml_data / 'mine-train.tfrecord')
    assert list(y) == [0, 0, 0, 1, 1, 1, -1, -1, -1, -1]
    np.testing.assert_array_equal(x[0], few)
    for copy in x[1:3]:  # augmented copies of the single image
        assert copy.shape == few.shape and not np.array_equal(copy, few)
    picked = [next(i for i, m in enumerate(many) if np.array_equal(m, image)) for image in x[3:6]]
    assert len(set(picked)) == 3  # three different originals, unchanged


def test_custom_cutout_only_on_chosen_part(ml_data):
    root = ml_data / 'src'
    train = save(f'{root}/train/a/1.png', np.full((16, 16, 3), 128, np.uint8))
    unlabelled = save(f'{root}/unlabeled/2.png', np.full((16, 16, 3), 128, np.uint8))
    test = save(f'{root}/test/a/3.png', np.full((16, 16, 3), 128, np.uint8))
    build(ml_data, *custom_args(root, f'--unlabeldir={root}/unlabeled', '--cutout=train', '--cutout_prob=1'))
    x, _ = read(ml_data / 'mine-train.tfrecord')
    changed = (x[0] != train).any(axis=2)
    assert 0 < changed.sum() < 16 * 16  # a rectangle was erased, not the whole image
    np.testing.assert_array_equal(x[1], unlabelled)
    np.testing.assert_array_equal(read(ml_data / 'mine-test.tfrecord')[0][0], test)
