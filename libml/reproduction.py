"""The reproduction tables: which cells each table trains, and how seeds become mean ± std, CSV, markdown, plots.

A cell is one method on one split seed; a table row gathers the same cell over the seeds. Each
cell's accuracy is the median test accuracy of its last 10 reports; its convergence is that
median minus the median of the 10 reports before.
"""

import csv
import dataclasses
import fcntl
import json
import os
import resource
import textwrap

from libml import rundir, workflow
from libml.utils import atomic_output, data_dir

import numpy as np


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
        fd = os.open(self.out_dir, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self.done = dict(self._load(), **{key: record})
            with atomic_output(self.store, overwrite=True) as tmp, open(tmp, 'w') as f:
                json.dump(self.done, f, indent=1, sort_keys=True)
        finally:
            os.close(fd)  # releases the lock

    def cell(self, method, keys, dataset, kimg, schedule):
        """A Cell with the runner's schedule rules: --quick, --train_kimg, baselines trained twice as long."""
        if self.quick:
            return Cell(method, tuple(keys), dataset, 1, tuple(workflow.QUICK_SCHEDULE))
        kimg = self.train_kimg or kimg
        if method in workflow.BASELINES:
            kimg *= 2  # they need it to sit on their plateau for the last 10 reports
        return Cell(method, tuple(keys), dataset, kimg, tuple(schedule) + (f'--train_kimg={kimg}',))

    def _key(self, cell, seed):
        """(cells.json key: the run folder under the train dir, the cell's training flags)."""
        flags = [f'--dataset={cell.dataset}', f'--train_dir={self.train_dir}', f'--seed={seed}', *cell.schedule]
        return os.path.relpath(workflow.run_dir_of(cell.method, flags), self.train_dir), flags

    def trainer_of(self, cell, seed):
        """Who is training `cell` for `seed` now ('pid N': another runner or a hand-run trainer), or None."""
        key, _ = self._key(cell, seed)
        return rundir.trainer_of(os.path.join(self.train_dir, key))

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
            result = workflow.train(cell.method, flags, self.log)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            # Every session's CPU time from the events; this call's alone for runs that predate that.
            spent = result['cpu_s']
            if spent is None:
                spent = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            self._record(
                key,
                dict(
                    accuracy=result['accuracy'],
                    last01=result['last01'],
                    curve=result['curve'],
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
    return float(np.median(values[-10:]) - np.median(values[-20:-10]))


def mean_std(values):
    """'91.2 ± 0.4' over seeds (std with ddof=1; a single value has no ±)."""
    values = np.asarray(values, float)
    if values.size == 1:
        return f'{values[0]:.1f}'
    return f'{values.mean():.1f} ± {values.std(ddof=1):.1f}'


def rows(results):
    """Results grouped by (method, keys) in first-seen order: [(cell, [results over seeds])]."""
    groups = {}
    for r in results:
        groups.setdefault((r['cell'].method, r['cell'].keys), []).append(r)
    return [(group[0]['cell'], group) for group in groups.values()]


def lead(group, results):
    """A row's mean lead (points) over the Supervised row of its number of labels, seed by seed.

    Paired: only the seeds both rows have count, so a row missing a seed is not compared with a
    baseline mean that includes it. '' for the baseline itself or when no seed is shared.
    """
    cell = group[0]['cell']
    labels = dict(cell.keys).get('labels')
    baseline = {
        r['seed']: r['accuracy']
        for r in results
        if r['cell'].method == 'Supervised' and dict(r['cell'].keys).get('labels') == labels
    }
    leads = [r['accuracy'] - baseline[r['seed']] for r in group if r['seed'] in baseline]
    if cell.method == 'Supervised' or not leads:
        return ''
    return f'{np.mean(leads):+.1f}'


def write_table(table, results, out_dir, quiet=False):
    """table_<name>.md/.csv (mean ± std over seeds, paired lead over Supervised, per-seed convergence,
    CPU time) and its plots."""
    header = [
        'method',
        *table.columns,
        'seeds',
        'test accuracy (%)',
        'lead over Supervised, same seeds',
        'change over previous 10 reports',
        'CPU time (min)',
    ]
    lines, csv_rows = [], [['method', *table.columns, 'seed', 'test accuracy (%)', 'change', 'cpu_min', 'command']]
    for cell, group in rows(results):
        keys = [v for _, v in cell.keys]
        changes = ' / '.join(f'{r["change"]:+.1f}' for r in group)
        cpu = sum(r['cpu_s'] for r in group) / 60
        lines.append(
            [
                cell.method,
                *keys,
                ','.join(str(r['seed']) for r in group),
                mean_std([r['accuracy'] for r in group]),
                lead(group, results),
                changes,
                f'{cpu:.1f}',
            ]
        )
        csv_rows += [
            [
                cell.method,
                *keys,
                r['seed'],
                f'{r["accuracy"]:.2f}',
                f'{r["change"]:+.2f}',
                f'{r["cpu_s"] / 60:.1f}',
                r['command'],
            ]
            for r in group
        ]
    total = sum(r['cpu_s'] for r in results) / 3600
    text = (
        f'## {table.title}\n\n'
        + workflow.markdown_table(header, lines)
        + f'\n\nTotal CPU time: {total:.1f} h (user + system, all cells).\n'
    )
    stem = os.path.join(out_dir, f'table_{table.name}')
    with atomic_output(stem + '.csv', overwrite=True) as tmp, open(tmp, 'w', newline='') as f:
        csv.writer(f).writerows(csv_rows)
    with atomic_output(stem + '.md', overwrite=True) as tmp, open(tmp, 'w') as f:
        f.write(text)
    plot_curves(results, stem + '_curves.png', table.title)
    if table.x_column:
        plot_against(results, table.x_column, stem + '_mismatch.png', table.title)
    if not quiet:
        print('\n' + text, flush=True)


def _pyplot():
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    return plt


def plot_curves(results, path, title):
    """Test accuracy vs kimg, one line per row (mean over seeds, shaded ± std).

    Two panels: the whole run, and the second half of the shortest row with the accuracy axis zoomed.
    Rows past the tenth repeat the colours with a dashed line, so no two rows look alike.
    """
    plt = _pyplot()
    fig, (whole, zoom) = plt.subplots(1, 2, figsize=(12, 5.5))
    colours = plt.get_cmap('tab10').colors
    curves = []
    for i, (cell, group) in enumerate(rows(results)):
        length = min(len(r['curve']) for r in group)
        kimg = np.array([s for s, _ in group[0]['curve'][:length]]) / 1024
        acc = np.array([[v for _, v in r['curve'][:length]] for r in group])
        label = ' '.join([cell.method] + [str(v) for _, v in cell.keys])
        mean = acc.mean(0)
        style = dict(color=colours[i % 10], linestyle=('-', '--', ':')[i // 10 % 3])
        for ax in (whole, zoom):
            ax.plot(kimg, mean, label=label if ax is whole else None, **style)
            if len(group) > 1:
                std = acc.std(0, ddof=1)
                ax.fill_between(kimg, mean - std, mean + std, color=style['color'], alpha=0.12)
        curves.append((kimg, mean))
    start = min(k[-1] for k, _ in curves) / 2  # the second half of the shortest row
    late = np.concatenate([a[k >= start] for k, a in curves])
    zoom.set_xlim(start, max(k[-1] for k, _ in curves) * 1.02)
    zoom.set_ylim(np.floor(late.min()) - 1, np.ceil(late.max()) + 1)
    whole.set_title('whole run', fontsize=9)
    zoom.set_title(f'from {start:g} kimg, accuracy axis zoomed', fontsize=9)
    for ax in (whole, zoom):
        ax.set(xlabel='kimg (thousands of labelled images)', ylabel='test accuracy (%)')
        ax.grid(alpha=0.3)
    fig.suptitle(textwrap.fill(title, 100), fontsize=10)
    fig.legend(loc='lower center', ncol=min(4, len(curves)), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.04 * (len(curves) // 4 + 1), 1, 1))  # room below for the legend
    _save(fig, path)


def plot_against(results, column, path, title):
    """Accuracy (mean ± std over seeds) against `column` (e.g. mismatch '25%'), one line per method.

    Each method's points are shifted a little sideways so that error bars at one level do not hide
    each other; a row of the column's value 'any' (the supervised baseline) is a band.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 5))
    methods = {}
    for cell, group in rows(results):
        x = dict(cell.keys)[column]  # '25%', or 'any' for a row that does not depend on the column
        x = x if x == 'any' else float(str(x).rstrip('%'))
        acc = [r['accuracy'] for r in group]
        methods.setdefault(cell.method, []).append((x, np.mean(acc), np.std(acc, ddof=1) if len(acc) > 1 else 0.0))
    baselines = {m: p[0] for m, p in methods.items() if len(p) == 1 and p[0][0] == 'any'}  # not on the column
    for method, (_, mean, std) in baselines.items():
        ax.axhline(mean, linestyle='--', color='grey', label=f'{method} (labelled only)')
        if std:
            ax.axhspan(mean - std, mean + std, color='grey', alpha=0.15)  # ± std over seeds
    lines = [(m, p) for m, p in methods.items() if m not in baselines]
    levels = sorted({x for _, points in lines for x, _, _ in points})
    dodge = 0.012 * (max(levels) - min(levels)) if len(levels) > 1 else 0  # error bars side by side
    for i, (method, points) in enumerate(lines):
        xs = [p[0] + (i - (len(lines) - 1) / 2) * dodge for p in points]
        ax.errorbar(xs, [p[1] for p in points], yerr=[p[2] for p in points], marker='o', capsize=4, label=method)
    ax.set_xticks(levels)
    ax.set(xlabel=f'{column} (%)', ylabel='test accuracy (%)')
    ax.set_title(textwrap.fill(title, 60), fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    _save(fig, path)


def _save(fig, path):
    """Writes a laid-out figure as PNG (atomically) and frees it."""
    with atomic_output(path, overwrite=True) as tmp:
        fig.savefig(tmp, format='png', dpi=110)
    _pyplot().close(fig)


# ----------------------------------------------------------------------------- the tables

DIGITS_VALID = 250
SSL_METHODS = ('MixMatch', 'RealMix', 'FixMatch', 'MixUp', 'ICT', 'Mean Teacher', 'Pi-Model', 'Pseudo-Label', 'VAT')
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
FASHION_FIXMATCH_KIMG = 160
# MixMatch's and RealMix's unlabelled weight, chosen on seed 1's 500 validation images (calibration.md):
# 96 kimg of MixMatch gave 80.4% at w_match 25, 75.8% at 75 (the CIFAR-10 value), a collapse to 38% at 250.
FASHION_W_MATCH = 25


def fashion_cell(runner, method, keys, dataset):
    """A Fashion-MNIST cell: FASHION_KIMG kimg reported every 4, FixMatch FASHION_FIXMATCH_KIMG.

    FixMatch's step trains on 1 + 2 x 7 images per labelled image where MixMatch's trains on 3, so
    its 160 kimg cost 4.3x MixMatch's 192. MixMatch and RealMix weigh their unlabelled loss by
    FASHION_W_MATCH. Every cell computes in bfloat16 (--mixed_precision; float32 variables; 1.7x
    the float32 step of this model on an AMX CPU) but those of algorithms that declare
    `float32_only` (VAT: its 1e-6 step is below bfloat16's resolution).
    """
    float32_only = workflow.algorithm_of(method).float32_only
    schedule = FASHION_SCHEDULE + ([] if float32_only else ['--mixed_precision'])
    if method in ('MixMatch', 'RealMix'):
        schedule += [f'--w_match={FASHION_W_MATCH}']
    kimg = FASHION_FIXMATCH_KIMG if method == 'FixMatch' else FASHION_KIMG
    return runner.cell(method, keys, dataset, kimg, schedule + ['--report_kimg=4'])


def make_mismatch(runner, source, seed, size, level, classes, inliers, tag):
    """`<tag><level>.<seed>@<size>`: labelled `inliers` renumbered 0..K-1, unlabelled from `classes` (others -1)."""
    name, stem = f'{tag}{level}', f'{seed}@{size}'
    order = f'--label_order={inliers}'
    for part, keep in (('label', inliers), ('unlabel', classes)):
        workflow.ensure(
            workflow.ssl_path(f'{name}.{stem}-{part}.tfrecord'),
            [
                'filter_dataset.py',
                f'--class_filter={keep}',
                order,
                f'--filter_dataset={workflow.ssl_path(f"{source}.{stem}-{part}.tfrecord")}',
                f'--save_name={workflow.ssl_path(f"{name}.{stem}-{part}.tfrecord")}',
            ],
            runner.log,
        )
    workflow.ensure(
        os.path.join(data_dir(), f'{name}-test.tfrecord'),
        [
            'filter_dataset.py',
            f'--class_filter={inliers}',
            order,
            f'--filter_dataset={os.path.join(data_dir(), f"{source}-test.tfrecord")}',
            f'--save_name={name}-test',
        ],
        runner.log,
    )
    return name


def table_a(runner, seed):
    cells = []
    for size in [50] if runner.quick else [50, 100, 250]:
        workflow.make_digits_split(seed, size, runner.log)
        aug = workflow.make_aug_copy('digits', seed, size, DIGITS_VALID, runner.log)
        for method in ('Supervised', 'Supervised MixUp', 'MixMatch', 'RealMix'):
            name = aug if method == 'RealMix' else 'digits'
            cells.append(
                runner.cell(
                    method, [('labels', size)], f'{name}.{seed}@{size}-{DIGITS_VALID}', 64, workflow.TABLE_SCHEDULE
                )
            )
    return cells


def table_b(runner, seed):
    cells = []
    levels = [100] if runner.quick else list(DIGITS_MISMATCH)
    for per_class in [3] if runner.quick else [3, 10]:
        size = per_class * 10
        workflow.make_digits_split(seed, size, runner.log)
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
                workflow.TABLE_SCHEDULE,
            )
        )
        for level in levels:
            aug = workflow.make_aug_copy(names[level], seed, size, 0, runner.log)
            for method, name in (('MixMatch', names[level]), ('RealMix', aug)):
                cells.append(
                    runner.cell(
                        method,
                        [labels, ('mismatch', f'{level}%')],
                        f'{name}.{seed}@{size}-0',
                        48,
                        workflow.TABLE_SCHEDULE,
                    )
                )
    return cells


def table_c(runner, seed):
    workflow.make_digits_split(seed, 50, runner.log)
    aug = workflow.make_aug_copy('digits', seed, 50, DIGITS_VALID, runner.log)
    methods = ['Supervised', 'RealMix'] if runner.quick else ['Supervised'] + list(SSL_METHODS)
    return [
        runner.cell(
            m,
            [('labels', 50)],
            f'{aug if m == "RealMix" else "digits"}.{seed}@50-{DIGITS_VALID}',
            64,
            workflow.TABLE_SCHEDULE,
        )
        for m in methods
    ]


def table_d(runner, seed):
    workflow.make_split('fashion_mnist', seed, 250, runner.log)
    aug = workflow.make_aug_copy('fashion_mnist', seed, 250, FASHION_VALID, runner.log, augment='cifar10')
    plain = f'fashion_mnist.{seed}@250-{FASHION_VALID}'
    rows = [
        ('Supervised', plain, 'plain'),
        ('MixMatch', plain, 'plain'),
        ('RealMix', plain, 'plain'),
        ('RealMix', f'{aug}.{seed}@250-{FASHION_VALID}', f'{workflow.AUG_COPIES} augmented copies'),
    ]
    rows += [(m, plain, 'plain') for m in SSL_METHODS if m not in ('MixMatch', 'RealMix')]
    if runner.quick:
        rows = rows[:1]
    return [fashion_cell(runner, m, [('labels', 250), ('unlabelled', kind)], dataset) for m, dataset, kind in rows]


def table_e(runner, seed):
    workflow.make_split('fashion_mnist', seed, 250, runner.log)
    levels = [100] if runner.quick else list(FASHION_MISMATCH)
    names = {
        lv: make_mismatch(runner, 'fashion_mnist', seed, 250, lv, FASHION_MISMATCH[lv], FASHION_INLIERS, 'fashion6_mm')
        for lv in levels
    }
    labels = ('labels', 150)
    cells = [fashion_cell(runner, 'Supervised', [labels, ('mismatch', 'any')], f'{names[levels[0]]}.{seed}@250-0')]
    for level in levels:
        for method in ('MixMatch', 'RealMix', 'FixMatch'):
            keys = [labels, ('mismatch', f'{level}%')]
            cells.append(fashion_cell(runner, method, keys, f'{names[level]}.{seed}@250-0'))
    return cells


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
    ),
}
