"""MNIST and Fashion-MNIST from their upstream idx files.

An idx file (gzipped upstream) is a big-endian int32 magic number 0x000008DD (8 = unsigned
bytes, DD = number of dimensions), one big-endian int32 size per dimension, then the values
in row-major order: images are 0x00000803 [N, rows, cols], labels 0x00000801 [N].

The four files keep their upstream names and are taken from --archive_dir when given (else
from the Debian package's folder when installed, else downloaded).
"""

import gzip
import os
import zlib

from libml.data.builders.common import Built, labels_of, pairs
from libml.errors import UserError

import numpy as np

SPLITS = ('train', 'test')
IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801
FILES = {
    'train': ('train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz'),
    'test': ('t10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz'),
}
FILE_LIST = ', '.join(f for split in SPLITS for f in FILES[split])

# Folder where Debian's dataset-fashion-mnist package installs the four files. Debian has
# no MNIST package, so MNIST comes from --archive_dir or a download only.
DEBIAN_FASHION_MNIST = '/usr/share/datasets/fashion-mnist'
FASHION_MNIST_URL = 'http://fashion-mnist.s3-website.eu-central-1.amazonaws.com'
MNIST_URL = 'https://storage.googleapis.com/cvdf-datasets/mnist'
FASHION_MNIST_NAMES = [
    'T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot',
]  # fmt: skip
MNIST_NAMES = [str(d) for d in range(10)]


def read_idx(path, magic):
    """The uint8 array [sizes...] of the gzipped idx file `path`, whose magic must be `magic`.

    UserError naming the file when it is not gzip, is truncated, has another magic number, or
    holds more bytes than its header says.
    """
    try:
        with gzip.open(path) as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as e:
        reason = ' '.join(str(e).split()) or type(e).__name__
        raise UserError(f'cannot read {path} ({reason}): not a complete gzip file; delete it and get it again') from e
    if len(data) < 4:
        raise UserError(f'{path} is truncated: {len(data)} bytes, not even a magic number')
    found = int.from_bytes(data[:4], 'big')
    if found != magic:
        raise UserError(
            f'{path} has magic number 0x{found:08x}, expected 0x{magic:08x} '
            f'({"images" if magic == IMAGES_MAGIC else "labels"}): is it the upstream file?'
        )
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise UserError(f'{path} is truncated: its header needs {header} bytes, it has {len(data)}')
    shape = tuple(int(s) for s in np.frombuffer(data, '>i4', ndim, 4))
    need = int(np.prod(shape, dtype=np.int64))
    have = len(data) - header
    if have != need:
        what = 'is truncated' if have < need else 'is longer than its header says'
        raise UserError(
            f'{path} {what}: {have} data bytes for {" x ".join(map(str, shape))} values; delete it and get it again'
        )
    return np.frombuffer(data, np.uint8, need, header).reshape(shape)


def read_split(images_path, labels_path, nclass):
    """(uint8 images [N, rows, cols, 1], int64 labels [N]) of one idx image file and its label file."""
    images = read_idx(images_path, IMAGES_MAGIC)
    labels = labels_of(read_idx(labels_path, LABELS_MAGIC), labels_path, nclass)
    if len(images) != len(labels):
        raise UserError(
            f'{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels: '
            'are they from the same dataset and release?'
        )
    return images[:, :, :, None], labels


def locate(name, sources, url, debian_dir, advice):
    """{split: (images path, labels path)}: from sources.archive_dir when set, else `debian_dir`, else downloaded."""
    paths = {}
    for split in SPLITS:
        found = []
        for filename in FILES[split]:
            packaged = os.path.join(debian_dir, filename) if debian_dir else None
            if not sources.archive_dir and packaged and os.path.isfile(packaged):
                found.append(packaged)
            else:
                found.append(sources.fetch(filename, url, folder=name, advice=advice))
        paths[split] = tuple(found)
    return paths


def build(name, sources, url, class_names, debian_dir=None, advice=None):
    """The four idx files of dataset `name` -> Built (train, test) in upstream order."""
    paths = locate(name, sources, url, debian_dir, advice)
    splits = {split: read_split(*paths[split], len(class_names)) for split in SPLITS}
    if splits['train'][0].shape[1:] != splits['test'][0].shape[1:]:
        raise UserError(
            f'{paths["train"][0]} holds {"x".join(map(str, splits["train"][0].shape[1:3]))} images but '
            f'{paths["test"][0]} holds {"x".join(map(str, splits["test"][0].shape[1:3]))} images'
        )
    return Built({split: pairs(*splits[split]) for split in SPLITS}, list(class_names), {})


def fashion_mnist(sources, debian_dir=DEBIAN_FASHION_MNIST):
    """Fashion-MNIST (60,000 train, 10,000 test, 28x28 grayscale, 10 classes) -> Built.

    debian_dir: where Debian's dataset-fashion-mnist package keeps the files (None: ignore it).
    """
    advice = (
        "install Debian's package (apt-get install dataset-fashion-mnist) or pass --archive_dir=DIR "
        f'holding the four upstream files {FILE_LIST}'
    )
    return build('fashion_mnist', sources, FASHION_MNIST_URL, FASHION_MNIST_NAMES, debian_dir, advice)


def mnist(sources):
    """MNIST (60,000 train, 10,000 test, 28x28 grayscale, digits 0-9) -> Built."""
    advice = f'download them elsewhere and pass --archive_dir=DIR holding the four upstream files {FILE_LIST}'
    return build('mnist', sources, MNIST_URL, MNIST_NAMES, None, advice)
