"""The reproduction tables a-f: the data each builds and the cells it trains (digits, Fashion-MNIST)."""

import os

from libml import algorithm
from libml.data.names import data_dir
from libml.data.records import read_labels
from libml.tables import steps
from libml.tables.cells import Table

DIGITS_VALID = 250


def ssl_methods():
    """The labels of every registered semi-supervised method (not a baseline), in rank order."""
    return [m.label for m in algorithm.registered() if not m.baseline]


# Unlabelled classes per mismatch level, as in the original out-of-distribution commands (digits 2-7 labelled).
DIGITS_MISMATCH = {0: '4,5,6,7', 25: '0,5,6,7', 50: '0,1,6,7', 75: '0,1,8,7', 100: '0,1,8,9'}
DIGITS_INLIERS = '2,3,4,5,6,7'
# Fashion-MNIST: labelled T-shirt/top, Trouser, Pullover, Dress, Coat, Shirt; Sandal, Sneaker, Bag, Ankle boot are
# out of distribution.
FASHION_MISMATCH = {0: '2,3,4,6', 25: '5,3,4,6', 50: '5,7,4,6', 75: '5,7,8,6', 100: '5,7,8,9'}
FASHION_INLIERS = '0,1,2,3,4,6'
FASHION_SCHEDULE = [
    '--filters=16',
    '--repeat=2',
    '--ema=0.99',
    '--bn_momentum=0.99',
    '--augment=cifar10',
    '--save_kimg=32',
]
# 192 kimg: MixMatch's 10-report median moves +0.1 points from 152-192 kimg (calibration.md).
FASHION_KIMG, FASHION_VALID = 192, 500
# FixMatch decays its learning rate over the run (cosine), so its length is its own: at 64 kimg seed 1 ended at
# 77.7% still rising (+3.2 points over its last 10 reports), at 128 kimg 80.8% still +1.4 (calibration.md).
# Its successors (FlexMatch, FreeMatch, SoftMatch, UDA) and IOMatch train with its loop recipe (IOMatch's step too
# takes 1 + 2 x 7 images per labelled image) and get its length; OpenMatch's step takes 1 + 3 x 2 (uratio 2, 2.3x
# MixMatch's), so it has its loop but not its recipe, and the common length.
FASHION_FIXMATCH_KIMG = 160
# The mismatch table's methods at every level; those that log `monitors/mask` show it beside their accuracy.
FASHION_MISMATCH_METHODS = (
    'MixMatch',
    'RealMix',
    'FixMatch',
    'FlexMatch',
    'FreeMatch',
    'SoftMatch',
    'OpenMatch',
    'IOMatch',
)
# MixMatch's and RealMix's unlabelled weight, chosen on seed 1's 500 validation images (calibration.md):
# 96 kimg of MixMatch gave 80.4% at w_match 25, 75.8% at 75 (the CIFAR-10 value), a collapse to 38% at 250.
FASHION_W_MATCH = 25
# Table f: the open-set protocol of the OpenMatch and IOMatch papers on Fashion-MNIST (six labelled classes, every
# other training image unlabelled), these rows in this order.
OPEN_SET_METHODS = (
    'Supervised',
    'MixMatch',
    'RealMix',
    'FixMatch',
    'FlexMatch',
    'FreeMatch',
    'SoftMatch',
    'UDA',
    'OpenMatch',
    'IOMatch',
)


def fashion_cell(runner, method, keys, dataset):
    """A Fashion-MNIST cell: FASHION_KIMG kimg reported every 4; FASHION_FIXMATCH_KIMG for the methods
    with FixMatch's loop recipe (FixMatch and its successors).

    FixMatch's step trains on 1 + 2 x 7 images per labelled image where MixMatch's trains on 3, so
    its 160 kimg cost 4.3x MixMatch's 192. MixMatch and RealMix weigh their unlabelled loss by
    FASHION_W_MATCH. Every cell computes in bfloat16 (--mixed_precision; float32 variables; 1.7x
    the float32 step of this model on an AMX CPU) but those of algorithms that declare
    `float32_only` (VAT: its 1e-6 step is below bfloat16's resolution).
    """
    found = steps.algorithm_of(method)
    schedule = FASHION_SCHEDULE + ([] if found.float32_only else ['--mixed_precision'])
    if method in ('MixMatch', 'RealMix'):
        schedule += [f'--w_match={FASHION_W_MATCH}']
    kimg = FASHION_FIXMATCH_KIMG if found.loop_defaults == algorithm.FIXMATCH_LOOP else FASHION_KIMG
    return runner.cell(method, keys, dataset, kimg, schedule + ['--report_kimg=4'])


def make_mismatch(runner, source, seed, size, level, classes, inliers, tag):
    """`<tag><level>.<seed>@<size>`: labelled `inliers` renumbered 0..K-1, unlabelled from `classes` (others -1).

    Also `<tag><level>-test` (the test images of `inliers`) and `<tag><level>-unseen` (those of every
    other class: the outlier AUROC's test set).
    """
    name, stem = f'{tag}{level}', f'{seed}@{size}'
    order = f'--label_order={inliers}'
    for part, keep in (('label', inliers), ('unlabel', classes)):
        steps.ensure(
            steps.ssl_path(f'{name}.{stem}-{part}.tfrecord'),
            [
                'filter_dataset.py',
                f'--class_filter={keep}',
                order,
                f'--filter_dataset={steps.ssl_path(f"{source}.{stem}-{part}.tfrecord")}',
                f'--save_name={steps.ssl_path(f"{name}.{stem}-{part}.tfrecord")}',
            ],
            runner.log,
        )
    test = os.path.join(data_dir(), f'{source}-test.tfrecord')
    others = sorted(set(read_labels(test).tolist()) - {int(c) for c in inliers.split(',')})
    for part, keep in (('test', inliers), ('unseen', ','.join(map(str, others)))):
        steps.ensure(
            os.path.join(data_dir(), f'{name}-{part}.tfrecord'),
            [
                'filter_dataset.py',
                f'--class_filter={keep}',
                order,
                f'--filter_dataset={test}',
                f'--save_name={name}-{part}',
            ],
            runner.log,
        )
    return name


def table_a(runner, seed):
    cells = []
    for size in [50] if runner.quick else [50, 100, 250]:
        steps.make_digits_split(seed, size, runner.log)
        aug = steps.make_aug_copy('digits', seed, size, DIGITS_VALID, runner.log)
        for method in ('Supervised', 'Supervised MixUp', 'MixMatch', 'RealMix'):
            name = aug if method == 'RealMix' else 'digits'
            cells.append(
                runner.cell(
                    method, [('labels', size)], f'{name}.{seed}@{size}-{DIGITS_VALID}', 64, steps.TABLE_SCHEDULE
                )
            )
    return cells


def table_b(runner, seed):
    cells = []
    levels = [100] if runner.quick else list(DIGITS_MISMATCH)
    for per_class in [3] if runner.quick else [3, 10]:
        size = per_class * 10
        steps.make_digits_split(seed, size, runner.log)
        names = {
            lv: make_mismatch(runner, 'digits', seed, size, lv, DIGITS_MISMATCH[lv], DIGITS_INLIERS, 'digits6_mm')
            for lv in levels
        }
        labels = ('labels', per_class * 6)
        # The labelled file is the same at every mismatch level: one supervised run per row.
        cells.append(
            runner.cell(
                'Supervised',
                [labels, ('mismatch', 'any')],
                f'{names[levels[0]]}.{seed}@{size}-0',
                48,
                steps.TABLE_SCHEDULE,
            )
        )
        for level in levels:
            aug = steps.make_aug_copy(names[level], seed, size, 0, runner.log)
            for method, name in (('MixMatch', names[level]), ('RealMix', aug)):
                cells.append(
                    runner.cell(
                        method,
                        [labels, ('mismatch', f'{level}%')],
                        f'{name}.{seed}@{size}-0',
                        48,
                        steps.TABLE_SCHEDULE,
                    )
                )
    return cells


def table_c(runner, seed):
    steps.make_digits_split(seed, 50, runner.log)
    aug = steps.make_aug_copy('digits', seed, 50, DIGITS_VALID, runner.log)
    methods = ['Supervised', 'RealMix'] if runner.quick else ['Supervised'] + ssl_methods()
    return [
        runner.cell(
            m,
            [('labels', 50)],
            f'{aug if m == "RealMix" else "digits"}.{seed}@50-{DIGITS_VALID}',
            64,
            steps.TABLE_SCHEDULE,
        )
        for m in methods
    ]


def table_d(runner, seed):
    steps.ensure_split('fashion_mnist', seed, 250, runner.log)
    aug = steps.make_aug_copy('fashion_mnist', seed, 250, FASHION_VALID, runner.log, augment='cifar10')
    plain = f'fashion_mnist.{seed}@250-{FASHION_VALID}'
    rows = [
        ('Supervised', plain, 'plain'),
        ('MixMatch', plain, 'plain'),
        ('RealMix', plain, 'plain'),
        ('RealMix', f'{aug}.{seed}@250-{FASHION_VALID}', f'{steps.AUG_COPIES} augmented copies'),
    ]
    rows += [(m, plain, 'plain') for m in ssl_methods() if m not in ('MixMatch', 'RealMix')]
    if runner.quick:
        rows = rows[:1]
    return [fashion_cell(runner, m, [('labels', 250), ('unlabelled', kind)], dataset) for m, dataset, kind in rows]


def table_e(runner, seed):
    steps.ensure_split('fashion_mnist', seed, 250, runner.log)
    levels = [100] if runner.quick else list(FASHION_MISMATCH)
    names = {
        lv: make_mismatch(runner, 'fashion_mnist', seed, 250, lv, FASHION_MISMATCH[lv], FASHION_INLIERS, 'fashion6_mm')
        for lv in levels
    }
    labels = ('labels', 150)
    cells = [fashion_cell(runner, 'Supervised', [labels, ('mismatch', 'any')], f'{names[levels[0]]}.{seed}@250-0')]
    for level in levels:
        for method in FASHION_MISMATCH_METHODS:
            keys = [labels, ('mismatch', f'{level}%')]
            cells.append(fashion_cell(runner, method, keys, f'{names[level]}.{seed}@250-0'))
    return cells


def table_f(runner, seed):
    """The open-set protocol: labelled and test classes FASHION_INLIERS, every other training image unlabelled.

    Closed-set accuracy on the six classes' test images; outlier AUROC on the whole test set (the six
    classes' images against the four others', outliers/auroc_test_unseen) and on the unlabelled images.
    """
    steps.ensure_split('fashion_mnist', seed, 250, runner.log)
    everything = ','.join(map(str, range(10)))
    name = make_mismatch(runner, 'fashion_mnist', seed, 250, '', everything, FASHION_INLIERS, 'fashion6_open')
    methods = ['Supervised', 'OpenMatch'] if runner.quick else OPEN_SET_METHODS
    return [fashion_cell(runner, m, [('labels', 150)], f'{name}.{seed}@250-0') for m in methods]


TABLES = {
    'a': Table('a', 'Table a: test accuracy (%) on digits by number of labels', ('labels',), table_a),
    'b': Table(
        'b',
        'Table b: digits, labelled classes 2-7, unlabelled with class mismatch',
        ('labels', 'mismatch'),
        table_b,
        x_column='mismatch',
    ),
    'c': Table('c', 'Table c: every algorithm on digits, 50 labels', ('labels',), table_c),
    'd': Table('d', 'Table d: Fashion-MNIST, 250 labels', ('labels', 'unlabelled'), table_d),
    'e': Table(
        'e',
        'Table e: Fashion-MNIST, labelled classes 0,1,2,3,4,6, unlabelled with class mismatch',
        ('labels', 'mismatch'),
        table_e,
        x_column='mismatch',
        show_mask=True,
    ),
    'f': Table(
        'f',
        'Table f: Fashion-MNIST open-set protocol, labelled classes 0,1,2,3,4,6 (150 labels), every other training '
        'image unlabelled; accuracy on those classes, outlier AUROC on the whole test set',
        ('labels',),
        table_f,
    ),
}
