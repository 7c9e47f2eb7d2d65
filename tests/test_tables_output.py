"""A table's markdown: mean, seeds and the paired lead (libml/tables/output.py)."""

import csv

from libml.tables.cells import Cell, Table
from libml.tables.output import write_table


def test_table_shows_each_rows_lead_over_the_baseline_on_the_seeds_both_have(tmp_path):
    def result(method, labels, seed, accuracy):
        cell = Cell(method, (('labels', labels),), 'digits', 1, ())
        curve = [[1024 * i, accuracy] for i in range(1, 21)]
        return dict(cell=cell, seed=seed, accuracy=accuracy, change=0.0, cpu_s=60.0, curve=curve, command='python')

    results = [
        result('Supervised', 50, 1, 70.0),
        result('Supervised', 50, 2, 74.0),
        result('Supervised', 100, 1, 80.0),
        result('MixMatch', 50, 1, 75.0),  # seed 1 only: 75 - 70, not 75 - mean(70, 74)
        result('RealMix', 50, 1, 71.0),
        result('RealMix', 50, 2, 73.0),  # (+1, -1): 0 on average
        result('RealMix', 100, 1, 86.5),  # against the 100-label baseline
        result('FixMatch', 250, 1, 90.0),  # no baseline with 250 labels
    ]
    table = Table('t', 'Table t', ('labels',), None)
    write_table(table, results, str(tmp_path), quiet=True)
    lines = open(tmp_path / 'table_t.md').read().splitlines()
    assert '| method | labels | seeds | test accuracy (%) | lead over Supervised, same seeds |' in lines[2]
    shown = {tuple(c.strip() for c in line.split('|')[1:3]): line.split('|')[5].strip() for line in lines[4:10]}
    assert shown == {
        ('Supervised', '50'): '',
        ('Supervised', '100'): '',
        ('MixMatch', '50'): '+5.0',
        ('RealMix', '50'): '+0.0',
        ('RealMix', '100'): '+6.5',
        ('FixMatch', '250'): '',
    }


def test_a_mismatch_table_shows_each_seeds_mask_share_beside_the_accuracy(tmp_path):
    def result(method, seed, mask):
        cell = Cell(method, (('mismatch', '50%'),), 'fashion6_mm50', 1, ())
        record = dict(accuracy=70.0, change=0.0, cpu_s=60.0, curve=[[1024, 70.0]], command='python')
        return dict(record, cell=cell, seed=seed, **({} if mask == 'unrecorded' else {'mask': mask}))

    results = [
        result('MixMatch', 1, None),  # logs no mask
        result('FixMatch', 1, 'unrecorded'),  # a cell recorded before masks were
        result('FixMatch', 2, 0.764),
        result('FlexMatch', 1, 0.9),
        result('FlexMatch', 2, 0.855),
    ]
    write_table(Table('t', 'Table t', ('mismatch',), None, show_mask=True), results, str(tmp_path), quiet=True)
    lines = open(tmp_path / 'table_t.md').read().splitlines()
    assert '| change over previous 10 reports | mask share, last 10 reports | CPU time (min) |' in lines[2]
    shown = {line.split('|')[1].strip(): line.split('|')[7].strip() for line in lines[4:7]}
    assert shown == {'MixMatch': '', 'FixMatch': '? / 0.76', 'FlexMatch': '0.90 / 0.85'}
    with open(tmp_path / 'table_t.csv') as f:
        rows = list(csv.reader(f))
    assert rows[0][5] == 'mask' and [r[5] for r in rows[1:]] == ['', '', '0.76', '0.90', '0.85']
    write_table(Table('u', 'Table u', ('mismatch',), None), results, str(tmp_path), quiet=True)
    assert 'mask' not in open(tmp_path / 'table_u.md').read()
