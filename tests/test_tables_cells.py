"""The demo and the reproduction tables at tiny size: every step runs and the tables are written."""

import json
import os
import re

from libml.tables import steps
from libml.tables.cells import Cell, Runner, finished
from libml.train import run_folder

from conftest import ROOT, run_cli

import algorithms

algorithms.load()  # the methods the tables name, registered by their algorithm files


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
