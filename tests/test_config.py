"""The guarantees against silent wrong results and stuck runs (issue 8), on real tiny runs."""

import glob
import os
import re
import shutil

from libml import cli, config
from libml.errors import UserError

import pytest

import realmix

DATASET = 'digits.1@50-250'


def run_dir_of(args):
    """The run dir `realmix.py args` trains into, computed from its command line."""
    return config.run_dir(cli.parse(realmix.RealMix, args), realmix.RealMix)


@pytest.mark.parametrize(
    'setting, value, words',
    [
        ('ema', 1.5, 'in [0, 1)'),
        ('lr', -1.0, '>= 0'),
        ('wd', -1.0, '>= 0'),
        ('beta', 0.0, '> 0'),
        ('percent_mask', 1.0, '-1 (off) or in [0, 1)'),
        ('percent_mask', 1.5, '-1 (off)'),
        ('warmup_kimg', -1, '>= 0'),
        ('repeat', 0, '>= 1'),
        ('temperature', 0.0, '> 0'),
        ('report_kimg', 0, '>= 1'),
        ('save_kimg', 0, '>= 1'),
        ('filters', 0, '>= 1'),
        ('nu', 0, '>= 1'),
        ('seed', -1, '>= 0'),
        ('eval_batch', 0, '>= 1'),
        ('bn_momentum', 1.0, 'in [0, 1)'),
        ('batch', 0, '>= 1'),
        ('uratio', 0, '>= 1'),
    ],
)
def test_every_numeric_setting_is_range_checked(setting, value, words):
    with pytest.raises(UserError, match=re.escape(f'--{setting}={value}: must be {words}')):
        config.build(realmix.RealMix, **{setting: value})


def test_mixed_precision_runs_get_their_own_folder_and_float32_runs_keep_theirs():
    plain = os.path.basename(run_dir_of([f'--dataset={DATASET}']))
    mixed = os.path.basename(run_dir_of([f'--dataset={DATASET}', '--mixed_precision']))
    assert 'mixed_precision' not in plain  # folders named before the setting joined the name still resume
    assert mixed == plain.replace('_nu2_', '_mixed_precisionTrue_nu2_'), (plain, mixed)


def test_vat_refuses_mixed_precision():
    import vat

    with pytest.raises(UserError, match=re.escape('--mixed_precision: VAT moves its inputs by 1e-6')):
        config.build(vat.VAT, mixed_precision=True)
    assert not config.build(vat.VAT).mixed_precision


def damaged_copy(run_dir, where, damage):
    """A copy of `run_dir` under `where` whose newest checkpoint (2048) is damaged; returns its prefix."""
    copy = os.path.join(where, DATASET, os.path.basename(run_dir))
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns('.lock'))
    newest = os.path.join(copy, 'tf', 'model.ckpt-0000002048')
    [data_file] = glob.glob(newest + '.data-*')
    if damage == 'remove_data':
        os.remove(data_file)
    elif damage == 'truncate_index':
        with open(newest + '.index', 'r+b') as f:
            f.truncate(os.path.getsize(newest + '.index') // 2)
    else:
        raw = bytearray(open(data_file, 'rb').read())
        if damage == 'truncate_data':
            raw = raw[: len(raw) // 2]
        elif damage == 'empty_data':
            raw = b''
        else:
            raw[len(raw) // 2] ^= 0xFF
        open(data_file, 'wb').write(bytes(raw))
    return newest


def test_a_list_that_repeats_a_seed_or_a_class_is_refused():
    with pytest.raises(UserError, match='--seeds=1,2,1 lists a seed twice'):
        config.parse_int_list('1,2,1', 'seeds', each='seed')
    assert config.parse_int_list('3,1,2', 'seeds', each='seed') == [3, 1, 2]
