"""STL-10 from the upstream binary tarball; the 100,000 unlabelled images are streamed."""

from libml.data.builders.common import Built, labels_of
from libml.data.builders.tarmat import TAR_ERRORS, open_tar, tar_member
from libml.errors import UserError

import numpy as np

SPLITS = ('train', 'test', 'unlabeled')
EXTRA_FILES = ('stl10_folds.json',)
URL = 'http://ai.stanford.edu/~acoates/stl10'
SHAPE = (3, 96, 96)
FOLDER = 'stl10_binary'


def stl10_images(path, member, count):
    """Streams the images of an STL-10 `*_X.bin` member: uint8 [96, 96, 3] each.

    Each image is stored as 3 x 96 x 96 in column-major order, hence the (2, 1, 0) transpose.
    """
    size = int(np.prod(SHAPE))
    with open_tar(path) as tar:
        stream = tar.extractfile(member)
        for _ in range(count):
            try:
                data = stream.read(size)
            except TAR_ERRORS as e:
                raise UserError(f'cannot read {member} from {path} ({e}): delete it and download it again') from e
            if len(data) != size:
                raise UserError(f'{member} in {path} ends early: delete it and download it again')
            yield np.frombuffer(data, np.uint8).reshape(SHAPE).transpose(2, 1, 0)


def stl10(sources):
    """stl10_binary.tar.gz -> Built (train, test, unlabeled with label -1; the folds as an extra)."""
    path = sources.fetch('stl10_binary.tar.gz', URL)
    size = int(np.prod(SHAPE))
    with open_tar(path) as tar:
        names = tar_member(tar, f'{FOLDER}/class_names.txt').decode().split()
        lines = tar_member(tar, f'{FOLDER}/fold_indices.txt').decode().splitlines()
        folds = [[int(i) for i in line.split()] for line in lines if line.strip()]
        counts = {}
        for split in SPLITS:
            member = f'{FOLDER}/{split}_X.bin'
            try:
                counts[split], rest = divmod(tar.getmember(member).size, size)
            except KeyError:
                raise UserError(f'{path} has no {member}: is it the upstream archive?') from None
            if rest:
                raise UserError(f'{member} in {path} is not a whole number of 3x96x96 images')
        labels = {
            split: labels_of(
                np.frombuffer(tar_member(tar, f'{FOLDER}/{split}_y.bin'), np.uint8), path, len(names), offset=1
            )
            for split in ('train', 'test')
        }
    labels['unlabeled'] = np.full(counts['unlabeled'], -1, np.int64)
    splits = {}
    for split in SPLITS:
        if len(labels[split]) != counts[split]:
            raise UserError(f'{path}: {counts[split]} {split} images but {len(labels[split])} labels')
        images = stl10_images(path, f'{FOLDER}/{split}_X.bin', counts[split])
        splits[split] = (zip(images, labels[split].tolist()), counts[split])
    return Built(splits, names, {'stl10_folds.json': {'folds': folds}})
