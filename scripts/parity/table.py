#!/usr/bin/env python3
"""The parity table: every algorithm both codebases have, trained by USB and by the project on the same split.

    python -m scripts.parity.table --quick                       # a minute per cell: checks the pipeline
    python -m scripts.parity.table                               # table d's split and model, 3 seeds, 64 kimg
    python -m scripts.parity.table --seeds=1                     # the first third, to measure the cost
    python -m scripts.parity.table --algorithms=fixmatch,mixmatch --sides=usb
    python -m scripts.parity.table --notrain                     # redraw the table and plot from results.json

Run it with the project's Python (.venv); USB's cells run in USB's venv (`make parity-env`) as
`python -m scripts.parity.usb_train`, the project's as its own trainer (`python fixmatch.py ...`).
Data: the split <dataset>.<seed>@<labels>-<valid> made by scripts/create_split.py (built when
missing); its labelled, unlabelled (the unlabel file less its <valid> validation images) and
test images are read from the TFRecords once and handed to USB as arrays (<out_dir>/data/).
Each cell's curve, CPU time and throughput go to <out_dir>/results.json as it finishes;
finished cells are skipped, an interrupted cell resumes from its last report (both sides). Writes
table.md, table.csv (every cell) and curves.png beside it.
"""

import csv
import dataclasses
import json
import os
import subprocess
import sys

from libml.config import parse_int_list
from libml.errors import UserError, cli_main

import numpy as np
from absl import app, flags

from scripts.parity import curves, project_side, spec

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
USB_PYTHON = os.path.join(ROOT, '.venv-parity', 'bin', 'python')

flags.DEFINE_string('algorithms', ','.join(spec.ALGORITHMS), 'Algorithms, comma-separated (USB names).')
flags.DEFINE_string('seeds', '1,2,3', 'Split seeds (the <seed> of the split; also the training seed).')
flags.DEFINE_string('sides', ','.join(spec.SIDES), 'Which implementations to train: usb, project or both.')
flags.DEFINE_string('dataset', 'fashion_mnist', 'Dataset (scripts/create_datasets.py name).')
flags.DEFINE_integer('labels', 250, 'Labelled images of the split.')
flags.DEFINE_integer('valid', 500, 'Validation images held out at the head of the unlabel file (never trained on).')
_DEFINE = {int: flags.DEFINE_integer, float: flags.DEFINE_float, str: flags.DEFINE_string}
for _field in dataclasses.fields(spec.Schedule):
    _flag = {'kimg': 'train_kimg'}.get(_field.name, _field.name)
    _DEFINE[type(_field.default)](_field.name, _field.default, f'Both sides: the project flag --{_flag}.')
flags.DEFINE_boolean('quick', False, 'Tiny model and 1 kimg (scripts/parity/spec.py TINY), first seed only.')
flags.DEFINE_boolean('train', True, 'Train missing cells; --notrain redraws the table from results.json.')
flags.DEFINE_string('train_dir', './experiments/parity', "Where the project's runs train.")
flags.DEFINE_string(
    'out_dir', '', 'results.json, table.md/.csv, curves.png, data/ and usb/; default <train_dir>/table.'
)
flags.DEFINE_string('usb_python', USB_PYTHON, "USB's Python (make parity-env).")
flags.DEFINE_integer('usb_workers', 1, "USB's data-loader worker processes per stream.")
FLAGS = flags.FLAGS


def schedule():
    if FLAGS.quick:
        return spec.TINY
    return spec.Schedule(**{f.name: FLAGS[f.name].value for f in dataclasses.fields(spec.Schedule)})


def _choices(text, allowed, flag):
    chosen = [t.strip() for t in text.split(',') if t.strip()]
    unknown = [t for t in chosen if t not in allowed]
    if unknown or not chosen:
        raise UserError(f'--{flag}={text}: expected some of {", ".join(allowed)}')
    return chosen


class Results:
    """<out_dir>/results.json: {cell key: result}, rewritten after each cell."""

    def __init__(self, out_dir):
        self.path = os.path.join(out_dir, 'results.json')
        self.cells = {}
        if os.path.exists(self.path):
            with open(self.path) as f:
                self.cells = json.load(f)

    def finished(self, cell):
        result = self.cells.get(cell.key)
        return bool(result and result['curve'] and result['curve'][-1][0] == cell.schedule.kimg << 10)

    def record(self, cell, result):
        self.cells[cell.key] = dict(result, cell=dataclasses.asdict(cell), accuracy=curves.accuracy(result))
        with open(self.path + '.tmp', 'w') as f:
            json.dump(self.cells, f, indent=1, sort_keys=True)
        os.replace(self.path + '.tmp', self.path)


def split_data(out_dir, split):
    """<out_dir>/data/<split>.npz: the split's arrays (written once)."""
    path = os.path.join(out_dir, 'data', f'{split}.npz')
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        np.savez(path + '.tmp.npz', **project_side.split_arrays(split))
        os.replace(path + '.tmp.npz', path)
    return path


def train_usb(cell, data, out_dir):
    """Trains USB's side of `cell` in USB's venv (resuming from its last report); returns its result."""
    out = os.path.join(out_dir, 'usb', cell.key.replace('/', '_') + '.json')
    os.makedirs(os.path.dirname(out), exist_ok=True)
    args = [FLAGS.usb_python, '-m', 'scripts.parity.usb_train', f'--cell={json.dumps(dataclasses.asdict(cell))}']
    args += [f'--data={data}', f'--out={out}', f'--workers={FLAGS.usb_workers}']
    print('$ ' + ' '.join(args[:3]) + f' --cell=... --data={data} --out={out}', flush=True)
    if subprocess.run(args, cwd=ROOT, env=spec.usb_environment()).returncode:
        raise UserError(f"USB's cell {cell.key} failed: see {out}.d/usb.log")
    with open(out) as f:
        result = json.load(f)
    return dict(result, command=' '.join(args[1:3]) + f' --cell={args[3][7:]}')


def train_cell(cell, data, out_dir):
    if cell.side == 'usb':
        return train_usb(cell, data, out_dir)
    return project_side.train(cell, os.path.abspath(FLAGS.train_dir), os.path.join(out_dir, 'commands.log'))


def write_table(results, algorithms, out_dir):
    """table.md (per algorithm), table.csv (per cell) and curves.png from the finished cells."""
    grouped = {side: {} for side in spec.SIDES}
    for record in results.cells.values():
        c = record['cell']
        grouped[c['side']].setdefault(c['algorithm'], {})[c['seed']] = record
    rows = curves.table_rows(grouped, algorithms)
    lines = ['| ' + ' | '.join(curves.HEADER) + ' |', '|' + '---|' * len(curves.HEADER)]
    lines += ['| ' + ' | '.join(row) + ' |' for row in rows]
    with open(os.path.join(out_dir, 'table.md'), 'w') as f:
        f.write('\n'.join(lines) + '\n')
    with open(os.path.join(out_dir, 'table.csv'), 'w', newline='') as f:
        writer = csv.writer(f)
        writer.writerow(
            ['side', 'algorithm', 'dataset', 'seed', 'kimg', 'accuracy', 'img_per_sec', 'cpu_s_to_95', 'command']
        )
        for record in results.cells.values():
            c = record['cell']
            writer.writerow(
                [
                    c['side'],
                    c['algorithm'],
                    c['dataset'],
                    c['seed'],
                    c['schedule']['kimg'],
                    f'{record["accuracy"]:.2f}',
                    f'{curves.throughput(record):.1f}',
                    f'{curves.cpu_to_share(record):.0f}',
                    record.get('command', ''),
                ]
            )
    curves.plot(grouped, algorithms, os.path.join(out_dir, 'curves.png'))
    print('\n'.join(lines))


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
    algorithms = _choices(FLAGS.algorithms, spec.ALGORITHMS, 'algorithms')
    sides = _choices(FLAGS.sides, spec.SIDES, 'sides')
    seeds = parse_int_list(FLAGS.seeds, 'seeds')[: 1 if FLAGS.quick else None]
    if 'usb' in sides and FLAGS.train and not os.path.exists(FLAGS.usb_python):
        raise UserError(f'{FLAGS.usb_python} is missing: run `make parity-env` first')
    out_dir = FLAGS.out_dir or os.path.join(FLAGS.train_dir, 'table')
    os.makedirs(out_dir, exist_ok=True)
    results = Results(out_dir)
    if FLAGS.train:
        for seed in seeds:
            project_side.make_split(FLAGS.dataset, seed, FLAGS.labels, os.path.join(out_dir, 'commands.log'))
            split = f'{FLAGS.dataset}.{seed}@{FLAGS.labels}-{FLAGS.valid}'
            data = split_data(out_dir, split)
            for name in algorithms:
                for side in sides:
                    cell = spec.Cell(side, name, split, seed, schedule())
                    if results.finished(cell):
                        continue
                    print(f'\n== {side}: {name} on {split} ==', flush=True)
                    results.record(cell, train_cell(cell, data, out_dir))
                    print(f'   test accuracy {results.cells[cell.key]["accuracy"]:.1f}%', flush=True)
    write_table(results, algorithms, out_dir)
    print(f'Results, table and plot are in {out_dir}', file=sys.stderr)


if __name__ == '__main__':
    app.run(cli_main(main))
