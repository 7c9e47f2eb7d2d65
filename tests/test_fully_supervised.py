"""The supervised baselines end to end: the split form and the seed README's custom-record form."""

import glob
import os
import re

import numpy as np
from conftest import TINY_TRAIN, run_cli
from PIL import Image


def test_fs_mixup_on_a_split_trains_on_its_labelled_file(digits, tmp_path):
    out = run_cli(
        ['fully_supervised/fs_mixup.py', '--dataset=digits.1@50-250', f'--train_dir={tmp_path}', '--train_kimg=1']
        + TINY_TRAIN,
        ml_data=digits,
    ).stdout
    assert '50 labelled training images' in out, out
    assert re.search(r'kimg +1 +accuracy train', out)
    assert glob.glob(str(tmp_path / 'digits.1@50-250' / 'FSMixup_*' / 'tf' / 'model.ckpt-0000001024.index'))


def make_custom_tree(root):
    """train/<class>/ (6 per class), unlabeled/ (8 flat files), test/<class>/ (2 per class), RGB 12x12."""
    rng = np.random.RandomState(0)
    for part, count in (('train', 6), ('test', 2)):
        for c, colour in enumerate([(250, 0, 0), (0, 250, 0), (0, 0, 250)]):
            folder = root / part / f'class{c}'
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = np.clip(np.array(colour) + rng.randint(0, 5, (12, 12, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f'{i}.png')
    (root / 'unlabeled').mkdir()
    for i in range(8):
        Image.fromarray(np.full((12, 12, 3), 128, np.uint8)).save(root / 'unlabeled' / f'{i}_x.png')


def test_fs_baseline_on_custom_records_with_unlabelled_images_uses_labelled_ones_only(ml_data, tmp_path):
    make_custom_tree(ml_data / 'mydataset')
    run_cli(
        [
            'scripts/create_datasets.py',
            'custom',
            '--name',
            'mydataset',
            f'--traindir={ml_data}/mydataset/train/',
            f'--unlabeldir={ml_data}/mydataset/unlabeled/',
            f'--testdir={ml_data}/mydataset/test/',
        ],
        ml_data=ml_data,
    )
    out = run_cli(
        [
            'fully_supervised/fs_baseline.py',
            '--train_dir',
            tmp_path / 'fs',
            '--dataset=mydataset-3',
            '--wd=0.02',
            '--smoothing=0.001',
            '--nclass=3',
            '--img_size=12',
            '--custom_dataset',
            '--train_record',
            'mydataset-train.tfrecord',
            '--test_record',
            'mydataset-test.tfrecord',
            '--train_kimg=1',
        ]
        + TINY_TRAIN,
        ml_data=ml_data,
    ).stdout
    assert '15 labelled training images' in out, out  # 18 labelled - 3 validation; the 8 unlabelled never
    assert re.search(r'kimg +1 +accuracy train', out)
    [run_dir] = glob.glob(str(tmp_path / 'fs' / 'mydataset-3' / 'FSBaseline_*'))
    assert os.path.exists(os.path.join(run_dir, 'tf', 'model.ckpt-0000001024.index'))


def test_baseline_without_records_names_the_missing_flags(ml_data, tmp_path):
    proc = run_cli(
        ['fully_supervised/fs_baseline.py', '--dataset=mydataset-50', f'--train_dir={tmp_path}'],
        ml_data=ml_data,
        check=False,
    )
    assert proc.returncode == 1 and 'Traceback' not in proc.stderr
    assert '--train_record' in proc.stderr
