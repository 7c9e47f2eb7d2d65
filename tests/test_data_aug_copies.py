"""Augmented copies made in chunks (libml/data/aug_copies.py)."""

from libml.data import aug_copies
from libml.data import names as datanames
from libml.data.records import decode_png, encode_png, write_records
from libml.errors import UserError

import numpy as np
import pytest
from test_data_dataset import NCLASS, image_for, index_of
from test_data_splits import parsed, reference_copies, write_train


def test_choose_valid_size():
    assert aug_copies.choose_valid_size(50) == 50
    assert aug_copies.choose_valid_size(300, 100) == 100
    assert aug_copies.choose_valid_size(300, 0) == 0
    with pytest.raises(UserError, match='--valid_size=51'):
        aug_copies.choose_valid_size(50, 51)


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
