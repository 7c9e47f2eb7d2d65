"""Image files: listing, class names, loading, offline augmentation (libml/data/image_files.py)."""

import os

from libml.data import image_files
from libml.data.builders import folders
from libml.errors import UserError

import numpy as np
import pytest
from guards import png
from PIL import Image
from test_scripts_create_datasets import noise, save


def test_list_images_recursive_sorted_by_extension(tmp_path):
    for name in ['b/2.PNG', 'a/1.jpeg', 'a/notes.txt', 'c.webp', '.hidden/3.png', 'a/.x.png']:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b'')
    found = [os.path.relpath(p, tmp_path) for p in image_files.list_images(tmp_path)]
    assert found == ['a/1.jpeg', 'b/2.PNG', 'c.webp']
    with pytest.raises(UserError, match='not found'):
        image_files.list_images(tmp_path / 'missing')


def test_class_of_folder_or_flat_name(tmp_path):
    assert image_files.class_of(tmp_path / 'dog' / 'x.jpg', tmp_path) == 'dog'
    assert image_files.class_of(tmp_path / 'dog' / '2019' / 'x.jpg', tmp_path) == 'dog'  # however deep
    assert image_files.class_of(tmp_path / '12_hot_dog.png', tmp_path) == 'hot_dog'
    assert image_files.class_of(tmp_path / 'photo.png', tmp_path) is None
    assert image_files.class_of(tmp_path / 'my_photo.png', tmp_path) is None


def test_load_image_converts_and_resizes(tmp_path):
    rgb = save(str(tmp_path / 'rgb.png'), noise(0, (4, 6, 3)))
    save(str(tmp_path / 'gray.png'), np.full((3, 3), 7, np.uint8))
    np.testing.assert_array_equal(image_files.load_image(tmp_path / 'rgb.png'), rgb)
    assert image_files.load_image(tmp_path / 'gray.png').shape == (3, 3, 1)
    assert (image_files.load_image(tmp_path / 'gray.png', size=5, channels=3) == 7).all()
    assert image_files.load_image(tmp_path / 'rgb.png', size=5, channels=1).shape == (5, 5, 1)
    (tmp_path / 'bad.png').write_bytes(b'junk')
    with pytest.raises(UserError, match='bad.png'):
        image_files.load_image(tmp_path / 'bad.png')


def test_random_affine_is_seeded_and_keeps_shape():
    image = noise(0, (12, 10, 3))
    one = image_files.random_affine(image, np.random.default_rng(5))
    assert one.shape == image.shape and one.dtype == np.uint8
    np.testing.assert_array_equal(one, image_files.random_affine(image, np.random.default_rng(5)))
    identity = image_files.random_affine(
        image, np.random.default_rng(0), max_rotate=0, max_shift=0, max_zoom=0, flip=False
    )
    np.testing.assert_array_equal(identity, image)
    mirrored = [
        np.array_equal(
            image_files.random_affine(image, np.random.default_rng(seed), max_rotate=0, max_shift=0, max_zoom=0),
            image[:, ::-1],
        )
        for seed in range(8)
    ]
    assert any(mirrored) and not all(mirrored)  # flipped half of the time, exactly


def test_random_erase_fills_one_rectangle():
    image = np.zeros((20, 20, 1), np.uint8)
    erased = image_files.random_erase(image, np.random.default_rng(3))
    rows, cols = np.nonzero(erased[:, :, 0])
    assert 0 < len(rows) < 20 * 20 and (image == 0).all()
    box = erased[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    assert (box > 0).mean() > 0.9  # noise values: the box is (almost) all non-zero


def test_load_image_scales_16_bit_grayscale_png(tmp_path):
    values = np.random.default_rng(0).integers(0, 65536, size=(16, 16), dtype=np.uint16)
    values[0, :4] = (0, 255, 256, 65535)
    Image.fromarray(values).save(tmp_path / 'deep.png')
    assert (tmp_path / 'deep.png').read_bytes()[24] == 16  # IHDR bit depth: really a 16-bit PNG
    loaded = image_files.load_image(tmp_path / 'deep.png')
    assert loaded.shape == (16, 16, 1) and loaded.dtype == np.uint8
    np.testing.assert_array_equal(loaded[:, :, 0], values // 256)  # the high byte, never clipped
    assert list(loaded[0, :4, 0]) == [0, 0, 1, 255]
    # The reported case: a mid-grey 16-bit image (32047/65535) must stay mid-grey, 32047 // 256 = 125
    # (it came out as 255, white, before), also when resized or turned into RGB.
    Image.fromarray(np.full((8, 8), 32047, np.uint16)).save(tmp_path / 'grey.png')
    assert (image_files.load_image(tmp_path / 'grey.png') == 125).all()
    assert (image_files.load_image(tmp_path / 'grey.png', size=4, channels=3) == 125).all()
    assert image_files.probe_image(tmp_path / 'grey.png') == (8, 8, True)


def test_an_image_folder_that_is_a_file_says_so(tmp_path):
    image = tmp_path / 'x.png'
    image.write_bytes(b'')
    with pytest.raises(UserError, match='x.png: is a file, not a folder of images'):
        image_files.list_images(str(image))


def test_image_folders_follow_links_skip_what_is_not_a_file_and_name_classes_by_their_folder(tmp_path, capsys):
    root, elsewhere = tmp_path / 'train', tmp_path / 'elsewhere'
    png(root / 'cat' / '2019' / 'a.png', 10)
    png(root / 'cat' / 'b.png', 20)
    png(elsewhere / 'dog' / '2019' / 'c.png', 200)
    os.symlink(elsewhere / 'dog', root / 'dog')  # a class folder that is a link
    os.symlink(root, root / 'cat' / 'loop')  # a link back up: listed once
    os.symlink(tmp_path / 'nowhere.png', root / 'cat' / 'broken.png')
    os.mkfifo(root / 'cat' / 'fifo.png')  # reading it would block forever
    found = [os.path.relpath(p, root) for p in image_files.list_images(str(root))]
    assert found == ['cat/2019/a.png', 'cat/b.png', 'dog/2019/c.png']
    warnings = capsys.readouterr().err.splitlines()
    assert sorted(w.split(':')[0] for w in warnings) == ['warning'] * 3
    assert any('fifo.png: not a regular file' in w for w in warnings) and any('loop' in w for w in warnings)
    assert [image_files.class_of(root / p, root) for p in found] == ['cat', 'cat', 'dog']
    png(tmp_path / 'test' / 'dog' / 'd.png', 250)
    built, _ = folders.custom(str(root), str(tmp_path / 'test'))
    assert built.class_names == ['cat', 'dog']
    items, count = built.splits['train']
    assert count == 3 and [label for _, label in items] == [0, 0, 1]
