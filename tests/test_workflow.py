"""The demo and the reproduction tables at tiny size: every step runs and the tables are written."""

import csv
import json
import os
import re

from libml.errors import UserError
from libml.tables import steps
from libml.tables.cells import Cell, Runner, Table, finished
from libml.tables.definitions import fashion_cell
from libml.tables.output import write_table
from libml.train import run_folder

import pytest
from conftest import ROOT, assert_user_error, run_cli

import algorithms

algorithms.load()  # the methods the tables name, registered by their algorithm files


def test_demo_quick_prints_the_table(digits, tmp_path):
    proc = run_cli(['scripts/demo.py', '--quick', f'--train_dir={tmp_path}'], ml_data=digits)
    out = proc.stdout
    assert '| RealMix | 50 |' in out and '| Supervised | 50 |' in out, out
    assert '%|' not in out + proc.stderr  # no tqdm bar ('  0%|    | 0/50') when the output is not a terminal
    assert os.path.exists(digits / 'SSL' / 'digits_aug8.1@50-unlabel.tfrecord')


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


def test_a_table_cell_refuses_a_run_folder_of_another_length(digits, tmp_path):
    flags = ['--dataset=digits.1@50-250', f'--train_dir={tmp_path}', '--seed=1']
    flags += [f for f in steps.QUICK_SCHEDULE if not f.startswith('--train_kimg')]
    first = steps.train('Supervised', flags + ['--train_kimg=1'])
    assert [images for images, _ in first['curve']] == [1024]
    with pytest.raises(UserError) as error:  # resuming would splice two schedules into one cell
        steps.train('Supervised', flags + ['--train_kimg=2'])
    message = str(error.value)
    assert first['run_dir'] in message and '--train_kimg=1, this one asks for 2' in message, message
    # The folder is untouched: the same length is read back, not retrained.
    again = steps.train('Supervised', flags + ['--train_kimg=1'])
    assert again['curve'] == first['curve'] and not os.path.exists(
        os.path.join(first['run_dir'], 'tf', 'model.ckpt-0000002048.index')
    )


def test_runners_sharing_an_out_dir_keep_each_others_cells(tmp_path):
    first, second = Runner(tmp_path, tmp_path), Runner(tmp_path, tmp_path)
    first._record('a/run', {'curve': [[1024, 50.0]]})
    second._record('b/run', {'curve': [[1024, 60.0]]})  # started before `first` wrote: must not drop a/run
    with open(tmp_path / 'cells.json') as f:
        assert sorted(json.load(f)) == ['a/run', 'b/run']
    cell = Cell('MixMatch', (), 'digits.1@50-250', 1, ('--train_kimg=1',))
    assert second.recorded(cell, 1) is None  # not in cells.json
    key, _ = first._key(cell, 1)
    first._record(key, dict(accuracy=55.0, curve=[[1024, 55.0]], cpu_s=1.0))
    assert second.recorded(cell, 1)['accuracy'] == 55.0  # finished by another runner


def test_a_runner_passes_over_a_cell_another_process_is_training(digits, tmp_path):
    runner = Runner(str(tmp_path), str(tmp_path / 'out'), quick=True)
    cell = runner.cell('Supervised', [('labels', 50)], 'digits.1@50-250', 64, steps.TABLE_SCHEDULE)
    run_dir = os.path.join(tmp_path, runner._key(cell, 1)[0])
    assert runner.trainer_of(cell, 1) is None  # no folder yet
    lock = run_folder.Lock(run_dir)  # as a trainer holds it
    assert runner.trainer_of(cell, 1) == f'pid {os.getpid()}'
    out = run_cli(
        ['scripts/reproduce.py', '--quick', '--tables=c', '--methods=Supervised', f'--train_dir={tmp_path}',
         f'--out_dir={tmp_path / "out"}'],
        ml_data=digits,
    ).stdout  # fmt: skip
    assert f'== Supervised on digits.1@50-250, seed 1: pid {os.getpid()} is training it; passed over ==' in out, out
    assert not re.search(r'^\$ python (?!scripts/)', out, re.M), out  # the data steps ran, no trainer
    assert '1 cell(s) passed over' in out and 'no finished cell yet' in out, out
    assert not os.path.exists(os.path.join(run_dir, 'tf'))  # nothing trained into the held folder
    lock.release()
    assert runner.trainer_of(cell, 1) is None


@pytest.mark.slow
def test_demo_reaches_its_published_accuracy(digits, tmp_path):
    """The real demo (about 10 minutes on 2 cores): RealMix >= 90% and >= 5 points over supervised."""
    out = run_cli(['scripts/demo.py', f'--train_dir={tmp_path}'], ml_data=digits, timeout=3600).stdout
    accuracy = {m: float(a) for m, a in re.findall(r'^\| (RealMix|Supervised) \| 50 \| ([\d.]+) \|', out, re.M)}
    assert accuracy['RealMix'] >= 90, out
    assert accuracy['RealMix'] >= accuracy['Supervised'] + 5, out


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


def test_a_recorded_cell_counts_as_finished_only_at_its_own_length():
    record = {'curve': [[2048, 10.0], [4096, 20.0], [65536, 90.0]]}
    assert finished(record, 64)
    assert not finished(record, 128)  # a longer schedule: trained again (resumed where it can be)
    assert not finished(None, 64) and not finished({'curve': []}, 64)
    # Table c's committed cells: every one finished at its schedule (64 kimg, the baseline twice that).
    with open(os.path.join(ROOT, 'results', 'digits', 'cells.json')) as f:
        cells = json.load(f)
    assert len(cells) == 30
    for key, record in cells.items():
        assert finished(record, 128 if '/FSBaseline_' in key else 64), key


def test_fashion_cells_train_with_their_own_flags_over_the_methods_defaults(tmp_path):
    runner = Runner(tmp_path, tmp_path)
    cells = {
        m: fashion_cell(runner, m, (), 'fashion_mnist.1@250-500')
        for m in ('MixMatch', 'RealMix', 'FixMatch', 'VAT', 'Supervised')
    }
    folder = {m: os.path.basename(runner._key(c, 1)[0]) for m, c in cells.items()}
    # The cell's --w_match=25 wins over the methods' 75; --mixed_precision names the folder; VAT stays float32.
    assert '_w_match25.0_' in folder['MixMatch'] and '_tsanone_' in folder['MixMatch'], folder
    assert '_w_match25.0_' in folder['RealMix'] and '_tsalinear_schedule_' in folder['RealMix'], folder
    assert all('_mixed_precisionTrue_' in folder[m] for m in ('MixMatch', 'RealMix', 'FixMatch', 'Supervised'))
    assert '_mixed_precision' not in folder['VAT']
    assert (cells['FixMatch'].kimg, cells['MixMatch'].kimg, cells['Supervised'].kimg) == (160, 192, 384)
    assert all('--report_kimg=4' in c.schedule for c in cells.values())  # last 10 reports = the last 40 kimg


def test_a_cells_flag_replaces_the_methods_default_in_the_command():
    merged = steps.merged_flags(['--warmup_kimg=32', '--w_match=75'], ['--seed=2', '--w_match=25'])
    assert merged == ['--warmup_kimg=32', '--seed=2', '--w_match=25']


def test_training_cpu_seconds_sums_each_sessions_last_report(tmp_path):
    from libml.report.events import training_cpu_seconds

    import tensorflow as tf

    def session(folder, reports):
        writer = tf.summary.create_file_writer(str(folder))
        with writer.as_default():
            for step, tags in reports:
                for tag, value in tags.items():
                    tf.summary.scalar(tag, value, step=step)
        writer.close()

    cpu = 'monitors/process_cpu_s'
    session(tmp_path, [(1024, {'accuracy_test': 50.0, cpu: 3.0}), (2048, {'accuracy_test': 60.0, cpu: 7.5})])
    session(tmp_path, [])  # killed before its first report
    session(tmp_path, [(3072, {'accuracy_test': 61.0, cpu: 2.0})])
    assert len(os.listdir(tmp_path)) == 3
    assert training_cpu_seconds(str(tmp_path)) == 9.5
    session(tmp_path, [(4096, {'accuracy_test': 62.0})])  # a session from before the tag: unknown
    assert training_cpu_seconds(str(tmp_path)) is None
