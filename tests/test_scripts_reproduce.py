"""scripts/reproduce.py end to end."""

import csv
import json
import os

from conftest import assert_user_error, run_cli


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
