"""The cells of the reproduction tables: what one cell trains, and the runner that trains each once.

A cell is one method on one split seed; a table row gathers the same cell over the seeds. Each
cell's accuracy is the median test accuracy of its last 10 reports; its convergence is that
median minus the median of the 10 reports before.
"""

import dataclasses
import json
import os
import resource

from libml import algorithm
from libml.files import atomic_output, folder_lock
from libml.report.metrics import median_of_tail
from libml.tables import steps
from libml.train import run_folder


@dataclasses.dataclass(frozen=True)
class Cell:
    """One training run of a table: `method` on `dataset` for `kimg`, with the row's `keys`."""

    method: str
    keys: tuple  # ((column, value), ...) shown before the accuracy
    dataset: str
    kimg: int
    schedule: tuple


@dataclasses.dataclass(frozen=True)
class Table:
    name: str
    title: str
    columns: tuple
    cells: object  # (runner, seed) -> [Cell]
    x_column: str = ''  # a column to plot accuracy against (mismatch tables)
    show_mask: bool = False  # a column of each seed's `mask` (steps.train), for the methods that log one


class Runner:
    """Builds the data of each cell and trains it.

    Finished cells are recorded in `<out_dir>/cells.json` (accuracy curve, CPU time, command), keyed
    by their run folder under the train dir: a cell found there with a curve that ends at the cell's
    length is not trained again, even when the run folder itself is gone (a table built over several
    sessions or machines). A run folder does not name its length (a run can be extended), so a
    recorded cell of another length is trained again: resumed to the new length where its folder is
    (the trainer warns that length-dependent schedules then change mid-run; delete the folder to
    train from the start). Several runners may share one out_dir, even over the same cells: each
    re-reads cells.json before a cell and merges into it under a lock, and `reproduce.py` passes
    over a cell whose run folder another process is training.
    """

    def __init__(self, train_dir, out_dir, quick=False, train_kimg=0):
        self.train_dir, self.quick, self.train_kimg = train_dir, quick, train_kimg
        self.out_dir = out_dir
        self.log = os.path.join(out_dir, 'commands.log')
        self.store = os.path.join(out_dir, 'cells.json')
        self.done = self._load()

    def _load(self):
        """cells.json as it is now (other runners may have added cells since this one started)."""
        if not os.path.exists(self.store):
            return {}
        with open(self.store) as f:
            return json.load(f)

    def _record(self, key, record):
        """Adds one finished cell to cells.json, merged under a lock with what other runners wrote meanwhile."""
        with folder_lock(self.out_dir):
            self.done = dict(self._load(), **{key: record})
            with atomic_output(self.store, overwrite=True) as tmp, open(tmp, 'w') as f:
                json.dump(self.done, f, indent=1, sort_keys=True)

    def cell(self, method, keys, dataset, kimg, schedule):
        """A Cell with the runner's schedule rules: --quick, --train_kimg, baselines trained twice as long."""
        if self.quick:
            return Cell(method, tuple(keys), dataset, 1, tuple(steps.QUICK_SCHEDULE))
        kimg = self.train_kimg or kimg
        if algorithm.method(method).baseline:
            kimg *= 2  # they need it to sit on their plateau for the last 10 reports
        return Cell(method, tuple(keys), dataset, kimg, tuple(schedule) + (f'--train_kimg={kimg}',))

    def _key(self, cell, seed):
        """(cells.json key: the run folder under the train dir, the cell's training flags)."""
        flags = [f'--dataset={cell.dataset}', f'--train_dir={self.train_dir}', f'--seed={seed}', *cell.schedule]
        return os.path.relpath(steps.run_dir_of(cell.method, flags), self.train_dir), flags

    def trainer_of(self, cell, seed):
        """Who is training `cell` for `seed` now ('pid N': another runner or a hand-run trainer), or None."""
        key, _ = self._key(cell, seed)
        return run_folder.trainer_of(os.path.join(self.train_dir, key))

    def recorded(self, cell, seed):
        """The result of `cell` for `seed` if cells.json holds it finished (by any runner), else None."""
        key, _ = self._key(cell, seed)
        self.done = self._load()
        return self._result(key, cell, seed) if finished(self.done.get(key), cell.kimg) else None

    def run(self, cell, seed):
        """Trains `cell` for `seed` unless it is recorded as finished; returns the cell's result dict."""
        key, flags = self._key(cell, seed)
        self.done = self._load()
        if not finished(self.done.get(key), cell.kimg):
            print(f'\n== {cell.method} on {cell.dataset}, seed {seed} ==', flush=True)
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            result = steps.train(cell.method, flags, self.log)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            # Every session's CPU time from the events; this call's alone for runs that predate that.
            spent = result['cpu_s']
            if spent is None:
                spent = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            self._record(
                key,
                dict(
                    accuracy=result['accuracy'],
                    aurocs=result['aurocs'],
                    last01=result['last01'],
                    curve=result['curve'],
                    mask=result['mask'],
                    cpu_s=spent,
                    train_s=result['train_s'],
                    command=result['command'],
                ),
            )
            print(f'   test accuracy {result["accuracy"]:.1f}% ({spent / 60:.1f} min of CPU)', flush=True)
        return self._result(key, cell, seed)

    def _result(self, key, cell, seed):
        record = self.done[key]
        return dict(record, cell=cell, seed=seed, change=plateau(record['curve']))


def finished(record, kimg):
    """Whether a cells.json `record` (or None) is a finished run of `kimg` kimg: its curve ends there."""
    return bool(record and record['curve']) and record['curve'][-1][0] == kimg * 1024


def plateau(curve):
    """Median of the last 10 test accuracies minus the median of the 10 before (points); NaN if < 20."""
    values = [v for _, v in curve]
    if len(values) < 20:
        return float('nan')
    return median_of_tail(values, 10) - median_of_tail(values[:-10], 10)
