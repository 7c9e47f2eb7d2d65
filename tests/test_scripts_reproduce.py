"""scripts/reproduce.py end to end."""

import csv
import glob
import json
import os

from libml.report.events import read_scalars
from libml.tables import steps

import archives
import pytest
from conftest import assert_user_error, run_cli

import algorithms

algorithms.load()  # the methods the tables name, registered by their algorithm files


def test_reproduce_quick_writes_tables_and_plots_and_skips_finished_cells(digits, tmp_path):
    run_cli(['scripts/reproduce.py', '--quick', '--tables=b', f'--train_dir={tmp_path}'], ml_data=digits, timeout=900)
    rows_b = list(csv.DictReader(open(tmp_path / 'reproduce' / 'table_b.csv')))
    assert [(r['method'], r['mismatch']) for r in rows_b] == [
        ('Supervised', 'any'),
        ('MixMatch', '100%'),
        ('RealMix', '100%'),
    ]
    for row in rows_b:
        assert 0 <= float(row['test accuracy (%)']) <= 100 and row['command'].startswith('python ')
    assert '| RealMix |' in open(tmp_path / 'reproduce' / 'table_b.md').read()
    assert os.path.exists(digits / 'SSL' / 'digits6_mm100.1@30-unlabel.tfrecord')
    for png in ('table_b_curves.png', 'table_b_mismatch.png'):
        assert open(tmp_path / 'reproduce' / png, 'rb').read(8) == b'\x89PNG\r\n\x1a\n', png
    log = open(tmp_path / 'reproduce' / 'commands.log').read()
    assert log.count('$ python realmix.py') == 2  # MixMatch and RealMix
    again = run_cli(['scripts/reproduce.py', '--quick', '--tables=b', f'--train_dir={tmp_path}'], ml_data=digits).stdout
    assert '$ python' not in again and '| RealMix | 18 | 100% |' in again  # every cell read from cells.json
    # --methods trains only those rows; the table still shows the other finished ones.
    only = run_cli(
        ['scripts/reproduce.py', '--quick', '--tables=b', '--methods=MixMatch', f'--train_dir={tmp_path}'],
        ml_data=digits,
    ).stdout
    assert '$ python' not in only and '| Supervised | 18 | any |' in only and '| RealMix | 18 | 100% |' in only
    # --notrain redraws the table from cells.json: RealMix's cell, forgotten there, is not trained again.
    store = tmp_path / 'reproduce' / 'cells.json'
    cells = {k: v for k, v in json.load(open(store)).items() if 'percent_mask0.25' not in k}
    assert len(cells) == 2  # Supervised and MixMatch
    json.dump(cells, open(store, 'w'))
    redrawn = run_cli(
        ['scripts/reproduce.py', '--quick', '--tables=b', '--notrain', f'--train_dir={tmp_path}'], ml_data=digits
    ).stdout
    table = open(tmp_path / 'reproduce' / 'table_b.md').read()
    assert '$ python' not in redrawn and '| MixMatch | 18 | 100% |' in table and '| RealMix |' not in table
    bad = run_cli(
        ['scripts/reproduce.py', '--quick', '--tables=b', '--methods=MixMatch,Ladder', f'--train_dir={tmp_path}'],
        ml_data=digits,
        check=False,
    )
    assert_user_error(bad, '--methods', 'Ladder', 'FixMatch')


@pytest.mark.slow  # 100-150 s; test_openmatch.py reads a run's AUROCs into a table's columns in seconds
def test_reproduce_quick_table_f_reports_outlier_aurocs(ml_data, tmp_path):
    """Table f on a small synthetic Fashion-MNIST: its data, two cells, the AUROC columns read from the runs' events."""
    archives.write_idx_dataset(tmp_path / 'src' / 'fashion_mnist', counts=(('train', 600), ('test', 60)), seed=6)
    run_cli(['scripts/create_datasets.py', 'fashion_mnist', f'--archive_dir={tmp_path / "src"}'], ml_data=ml_data)
    train_dir = tmp_path / 'runs'
    run_cli(['scripts/reproduce.py', '--quick', '--tables=f', '--seeds=1', f'--train_dir={train_dir}'], ml_data=ml_data)
    for name in ('fashion6_open-test', 'fashion6_open-unseen', 'SSL/fashion6_open.1@250-unlabel'):
        assert (ml_data / f'{name}.tfrecord').exists(), name
    rows = {r['method']: r for r in csv.DictReader(open(train_dir / 'reproduce' / 'table_f.csv'))}
    assert list(rows) == ['Supervised', 'OpenMatch']
    for method, row in rows.items():
        [run_dir] = glob.glob(str(train_dir / 'fashion6_open.1@250-0' / f'{steps.algorithm_of(method).name}_*'))
        for name in ('unlabelled', 'test_unseen'):
            [(_, value)] = read_scalars(os.path.join(run_dir, 'tf'), f'outliers/auroc_{name}')  # one report
            assert float(row[f'auroc_{name}']) == pytest.approx(value, abs=1e-4), (method, name)
    header = open(train_dir / 'reproduce' / 'table_f.md').read().splitlines()[2]
    assert '| outlier AUROC, unlabelled | outlier AUROC, test vs unseen |' in header
