#!/usr/bin/env python3
"""The RealMix paper's comparisons on real data, from data building to tables and plots.

Tables (each cell = one method on one split seed; the table gives mean ± std over --seeds of
each cell's test accuracy, the median of its last 10 reports):
  a  digits, 50 / 100 / 250 labels: supervised, supervised MixUp, MixMatch, RealMix.
  b  digits, distribution mismatch: labelled classes 2-7 at 3 and 10 labels per class,
     unlabelled classes 4,5,6,7 (0%) ... 0,1,8,9 (100%); supervised, MixMatch, RealMix.
  c  digits, 50 labels: the supervised baseline and every semi-supervised algorithm.
  d  Fashion-MNIST, 250 labels: the supervised baseline, MixMatch, RealMix on the plain split
     and on its augmented copies, and every other algorithm.
  e  Fashion-MNIST, distribution mismatch: labelled classes 0,1,2,3,4,6; unlabelled from four
     classes, 2,3,4,6 (0%) ... 5,7,8,9 (100%), the same number of images at every level;
     supervised, MixMatch, RealMix, FixMatch, OpenMatch, IOMatch.
  f  Fashion-MNIST, the open-set protocol: labelled and test classes 0,1,2,3,4,6, every other
     training image unlabelled (the four other classes included); closed-set accuracy and the
     outlier AUROC on the whole test set; supervised, MixMatch, RealMix, FixMatch, its successors
     and OpenMatch, IOMatch.

Cells whose runs report an outlier AUROC (outliers/auroc_unlabelled, outliers/auroc_test_unseen:
tables e and f) get a column for each, the median of the last 10 reports.

Writes <out_dir>/table_<x>.md and .csv (every cell's command), test-accuracy
curves (table_<x>_curves.png) and, for mismatch tables, accuracy and outlier AUROCs vs mismatch
with error bars (table_<x>_mismatch.png); commands.log holds every command with its output, cells.json every
finished cell. Finished cells are skipped (even when their run folders are gone) and interrupted
ones resume, so a table can be built over several sessions. Runners started side by side share
the work: each passes over a cell whose run folder another process is training.

    python scripts/reproduce.py --tables=c
    python scripts/reproduce.py --tables=d,e --seeds=1,2,3
    python scripts/reproduce.py --tables=d --methods=Supervised,MixMatch,RealMix   # those rows first
    python scripts/reproduce.py --tables=d,e --notrain     # redraw the tables and plots from cells.json
    python scripts/reproduce.py --quick      # tiny schedules, one seed: checks the pipeline only
"""

import os

from libml.config import parse_int_list
from libml.errors import UserError, cli_main
from libml.tables.cells import Runner
from libml.tables.definitions import TABLES
from libml.tables.output import write_table

from absl import app, flags

import algorithms

METHODS = [m.label for m in algorithms.load()]  # every algorithm file's methods, by rank

flags.DEFINE_string('train_dir', './experiments', 'Where the runs are trained.')
flags.DEFINE_string(
    'out_dir', '', 'Tables, plots, cells.json (finished cells) and commands.log; default <train_dir>/reproduce.'
)
flags.DEFINE_string('tables', 'c', 'Which tables to produce, comma-separated: ' + ', '.join(TABLES))
flags.DEFINE_string(
    'seeds', '1,2,3', 'Split seeds (the <seed> of <name>.<seed>@<size>; also the training seed); the tables show these.'
)
flags.DEFINE_boolean(
    'quick', False, 'Tiny schedules and the first row of each table only: checks the pipeline, not the numbers.'
)
flags.DEFINE_string(
    'methods',
    '',
    'Train only these rows, comma-separated method names (e.g. Supervised,MixMatch,RealMix); the '
    'tables still show every other finished cell. Empty = every row. Runners with different '
    '--methods or --tables can share one --out_dir in parallel. Methods: ' + ', '.join(METHODS) + '.',
)
flags.DEFINE_boolean(
    'train',
    True,
    'Train the cells not finished yet; --notrain only rewrites the tables and plots from cells.json '
    '(the datasets the tables name are still built when missing).',
)
flags.DEFINE_integer(
    'train_kimg', 0, "Length of every semi-supervised cell in kimg (baselines: twice); 0 = each table's own schedule."
)
FLAGS = flags.FLAGS


def chosen_methods(text):
    """The set of method names of --methods (every method when empty); UserError naming unknown ones."""
    if not text.strip():
        return set(METHODS)
    methods = [m.strip() for m in text.split(',') if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise UserError(f'--methods: unknown {", ".join(unknown)}; expected some of {", ".join(METHODS)}')
    return set(methods)


def finished_cells(runner, plan):
    """The results of the (cell, seed) pairs of `plan` that cells.json holds finished."""
    return [r for r in (runner.recorded(cell, seed) for cell, seed in plan) if r]


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
    tables = [t.strip() for t in FLAGS.tables.split(',') if t.strip()]
    unknown = sorted(set(tables) - set(TABLES))
    if unknown or not tables:
        raise UserError(f'--tables={FLAGS.tables}: expected some of {", ".join(TABLES)}')
    seeds = parse_int_list(FLAGS.seeds, 'seeds', each='seed')
    if FLAGS.quick:
        seeds = seeds[:1]
    out_dir = FLAGS.out_dir or os.path.join(FLAGS.train_dir, 'reproduce')
    os.makedirs(out_dir, exist_ok=True)
    methods = chosen_methods(FLAGS.methods)
    runner = Runner(FLAGS.train_dir, out_dir, FLAGS.quick, FLAGS.train_kimg)
    passed_over = 0  # cells another process was training
    for name in tables:
        table = TABLES[name]
        plan = [(cell, seed) for seed in seeds for cell in table.cells(runner, seed)]
        for cell, seed in plan:
            if FLAGS.train and cell.method in methods and not runner.recorded(cell, seed):
                owner = runner.trainer_of(cell, seed)
                if owner:
                    print(f'\n== {cell.method} on {cell.dataset}, seed {seed}: {owner} is training it; passed over ==')
                    passed_over += 1
                    continue
                runner.run(cell, seed)
                # The table so far: every finished cell, whichever runner trained it, of every seed.
                write_table(table, finished_cells(runner, plan), out_dir, quiet=True)
        results = finished_cells(runner, plan)
        if results:
            write_table(table, results, out_dir)
        else:
            print(f'Table {name}: no finished cell yet')
    if passed_over:
        print(f'{passed_over} cell(s) passed over while other processes trained them: rerun when they end to show them')
    print(f'Tables, plots and commands.log are in {out_dir}')


if __name__ == '__main__':
    app.run(cli_main(main))
