"""Training images that repeat test images (libml/data/overlap.py), found by their pixels."""

import hashlib

from libml.data import overlap
from libml.data.dataset import DataSet
from libml.train import run

from conftest import read
from guards import DATASET, rebuilt_from_test_images


def test_images_repeating_test_images_are_counted_by_their_pixels(digits, tmp_path, capsys):
    rebuilt_from_test_images(digits)  # every image of the split is a test image
    dataset = DataSet.from_name(DATASET)
    test_pixels = {hashlib.sha256(x.tobytes()).digest() for x in read(digits / 'digits-test.tfrecord')[0]}

    def reference(part):  # independent: Pillow's decoding, sha256 of the pixels
        pixels = read(part.path)[0][part.records]
        return [sum(hashlib.sha256(x.tobytes()).digest() in test_pixels for x in pixels), len(part)]

    parts = dataset.parts()
    counts = overlap.repeats_of_test(parts)
    assert counts == {name: reference(parts[name]) for name in ('labelled', 'validation', 'unlabelled')}
    assert counts == {'labelled': [50, 50], 'validation': [250, 250], 'unlabelled': [200, 200]}
    run._check_data(dataset, str(tmp_path))
    assert capsys.readouterr().out.startswith('warning: 50 of the 50 labelled, 250 of the 250 validation, 200 of')
    clean = DataSet.from_records('x-0', str(digits / 'digits-train.tfrecord'), str(digits / 'digits-test.tfrecord'), 0)
    assert overlap.repeats_of_test(clean.parts()) == {'labelled': [0, 1297]}  # digits' own files share no image
