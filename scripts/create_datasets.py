#!/usr/bin/env python3
"""Builds dataset TFRecord files under $ML_DATA from upstream archives or image folders.

Usage:
  scripts/create_datasets.py [cifar10] [cifar100] [svhn] [stl10] [digits] [fashion_mnist] [mnist]
                                                                    (none: cifar10 svhn)
  scripts/create_datasets.py custom --name=NAME --traindir=D --testdir=D [--unlabeldir=D]

Writes $ML_DATA/<name>-train.tfrecord and <name>-test.tfrecord (plus svhn-extra and
stl10-unlabeled, whose labels are -1), and <name>_class_mappings.json ({"0": "airplane", ...});
stl10 also writes stl10_folds.json (the 10 upstream folds: indices into stl10-train). Prints
the number of images per class and split.

The upstream archives (CIFAR MATLAB tarballs, SVHN {train,test,extra}_32x32.mat, the STL-10
binary tarball, the MNIST and Fashion-MNIST idx files train-images-idx3-ubyte.gz,
train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) are
downloaded into $ML_DATA/downloads (an interrupted download resumes), or read from
--archive_dir under their upstream file names. Fashion-MNIST is read from Debian's
dataset-fashion-mnist package (/usr/share/datasets/fashion-mnist) when it is installed and
--archive_dir is not given. MNIST and Fashion-MNIST become 28x28 grayscale records in upstream
order (60,000 train, 10,000 test). `digits` is scikit-learn's bundled 8x8 digits set,
upsampled to 16x16 grayscale and split 1,297 train / 500 test: it needs no network.

`custom` reads images (png, jpg, jpeg, bmp, gif, webp) stored in class folders
(train/dog/x.jpg) or named <index>_<class>.<ext> (see scripts/rename_files.py). Class ids
follow the sorted train class names. Labelled train images come first in NAME-train.tfrecord,
then the --unlabeldir images with label -1.
"""

import os
import re

from libml.data.builders import cifar, digits, folders, idx, stl10, svhn
from libml.data.builders.download import Sources
from libml.data.builders.writer import output_paths, summary, write_dataset
from libml.data.names import data_dir
from libml.errors import UserError, cli_main
from libml.files import check_writable

from absl import app, flags

flags.DEFINE_string(
    'archive_dir',
    None,
    'Folder holding the upstream archives under their upstream file names '
    '(cifar-10-matlab.tar.gz, cifar-100-matlab.tar.gz, train_32x32.mat, test_32x32.mat, '
    'extra_32x32.mat, stl10_binary.tar.gz; for mnist and fashion_mnist the four idx .gz files, '
    'directly in it or in its mnist/ or fashion_mnist/ sub-folder, which building both needs); '
    'no download then, and the Debian package folder is not used.',
)
flags.DEFINE_string(
    'download_url',
    None,
    'Fetch every archive from <this URL>/<upstream file name> instead of the upstream sites (a mirror); '
    'mnist and fashion_mnist, whose files share names, from <this URL>/mnist/ and <this URL>/fashion_mnist/ '
    '(the layout of $ML_DATA/downloads).',
)
flags.DEFINE_float('download_timeout', 15, 'Seconds to wait for the download server to answer.')
flags.DEFINE_bool('overwrite', False, 'Replace existing output files.')
flags.DEFINE_string('name', None, 'custom: the dataset name (letters, digits and _ only).')
flags.DEFINE_string('traindir', None, 'custom: folder of labelled training images.')
flags.DEFINE_string('testdir', None, 'custom: folder of labelled test images.')
flags.DEFINE_string(
    'unlabeldir',
    None,
    'custom: folder of unlabelled images, stored after the labelled ones in '
    'NAME-train.tfrecord with label -1 (class folders or names are ignored).',
)
flags.DEFINE_integer(
    'img_size',
    None,
    'custom: resize every image to this many pixels square (bilinear); needed when the images differ in size.',
    lower_bound=1,
)
flags.DEFINE_integer(
    'train_balance',
    0,
    'custom: over/under-sample every training class to this many images; the '
    'extra copies are randomly flipped, shifted, rotated and zoomed. 0 = off.',
    lower_bound=0,
)
flags.DEFINE_integer(
    'unlabel_balance',
    0,
    'custom: the same for the unlabelled images, grouped by their class folder or file name. 0 = off.',
    lower_bound=0,
)
flags.DEFINE_enum(
    'cutout',
    None,
    list(folders.RANDOM_ERASING_PARTS),
    'custom: random erasing (a random rectangle filled with uniform noise), applied once to the '
    'stored images when the files are built, to the labelled train images, the unlabelled images, '
    'or both (never to test). Named --cutout as in the original tool; it is not the grey-square '
    'Cutout of training-time augmentation (--augment=cutout).',
)
flags.DEFINE_float(
    'cutout_prob', 0.5, 'custom: probability that --cutout erases a given image.', lower_bound=0, upper_bound=1
)
flags.DEFINE_bool(
    'skip_bad_images', False, 'custom: skip (and count) corrupt or unreadable images instead of stopping.'
)
flags.DEFINE_integer('seed', 0, 'custom: random seed of balancing and random erasing (--cutout).')

FLAGS = flags.FLAGS

DEFAULT_NAMES = ('cifar10', 'svhn')
# Built-in datasets: name -> (splits, extra files, builder taking a download.Sources).
BUILTIN = {
    'cifar10': (cifar.SPLITS, (), cifar.cifar10),
    'cifar100': (cifar.SPLITS, (), cifar.cifar100),
    'svhn': (svhn.SPLITS, (), svhn.svhn),
    'stl10': (stl10.SPLITS, stl10.EXTRA_FILES, stl10.stl10),
    'digits': (digits.SPLITS, (), lambda sources: digits.digits()),
    'fashion_mnist': (idx.SPLITS, (), idx.fashion_mnist),
    'mnist': (idx.SPLITS, (), idx.mnist),
}
KINDS = [*BUILTIN, 'custom']
CUSTOM_FLAGS = (
    'name',
    'traindir',
    'testdir',
    'unlabeldir',
    'img_size',
    'train_balance',
    'unlabel_balance',
    'cutout',
    'skip_bad_images',
)


def paths_of(name, kind):
    """Every file that building dataset `name` of kind `kind` ('custom' or a built-in name) writes."""
    if kind == 'custom':
        return output_paths(data_dir(), name, folders.SPLITS)
    splits, extra_files, _ = BUILTIN[kind]
    return output_paths(data_dir(), name, splits, extra_files)


def build(kind):
    """(Built, list of skipped unreadable images) of dataset kind `kind`, from the flags."""
    if kind == 'custom':
        return folders.custom(
            FLAGS.traindir,
            FLAGS.testdir,
            FLAGS.unlabeldir,
            img_size=FLAGS.img_size,
            train_balance=FLAGS.train_balance,
            unlabel_balance=FLAGS.unlabel_balance,
            random_erasing=FLAGS.cutout,
            random_erasing_prob=FLAGS.cutout_prob,
            skip_bad_images=FLAGS.skip_bad_images,
            seed=FLAGS.seed,
        )
    sources = Sources(
        os.path.join(data_dir(), 'downloads'), FLAGS.archive_dir, FLAGS.download_url, FLAGS.download_timeout
    )
    return BUILTIN[kind][2](sources), []


def check_arguments(names):
    """UserError for unknown dataset names or flags that do not fit them."""
    unknown = [n for n in names if n not in KINDS]
    if unknown:
        raise UserError(f'unknown dataset {unknown[0]!r}: choose among {", ".join(KINDS)}')
    if 'custom' in names:
        if not FLAGS.name:
            raise UserError('custom needs --name=NAME (and --traindir, --testdir)')
        if not re.fullmatch(r'[A-Za-z0-9_]+', FLAGS.name):
            raise UserError(
                f'--name={FLAGS.name!r}: use letters, digits and _ only '
                '("-" and "." separate the parts of dataset names)'
            )
        if FLAGS.name in BUILTIN:
            raise UserError(f'--name={FLAGS.name} is a built-in dataset: choose another name')
        for flag in ('traindir', 'testdir'):
            if not FLAGS[flag].value:
                raise UserError(f'custom needs --{flag}=D')
        if not FLAGS.unlabeldir and (FLAGS.unlabel_balance or FLAGS.cutout == 'unlabel'):
            raise UserError('--unlabel_balance and --cutout=unlabel need --unlabeldir=D')
    else:
        given = [f for f in CUSTOM_FLAGS if FLAGS[f].present]
        if given:
            raise UserError(f'--{given[0]} only applies to "custom"')
    shared = ('fashion_mnist', 'mnist')
    if FLAGS.archive_dir and all(n in names for n in shared):
        missing = [n for n in shared if not os.path.isdir(os.path.join(FLAGS.archive_dir, n))]
        if missing:
            raise UserError(
                f'fashion_mnist and mnist files share their upstream names: put them in '
                f'--archive_dir={FLAGS.archive_dir} sub-folders fashion_mnist/ and mnist/ '
                f'({os.path.join(FLAGS.archive_dir, missing[0])} is missing), or build them one at a time'
            )


def main(argv):
    names = argv[1:] or list(DEFAULT_NAMES)
    check_arguments(names)
    targets = [(FLAGS.name if n == 'custom' else n, n) for n in dict.fromkeys(names)]
    for name, kind in targets:
        for path in paths_of(name, kind):
            check_writable(path, FLAGS.overwrite)
    for name, kind in targets:
        built, bad = build(kind)
        counts = write_dataset(data_dir(), name, built, FLAGS.overwrite)
        print(summary(name, built.class_names, counts))
        if bad:
            print(f'skipped {len(bad)} unreadable image(s): ' + ', '.join(bad))
        print(f'wrote {", ".join(paths_of(name, kind))}', flush=True)


if __name__ == '__main__':
    app.run(cli_main(main))
