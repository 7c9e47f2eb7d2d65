#!/usr/bin/env python3
"""The embedded demo: RealMix vs a supervised baseline on 50 labelled handwritten digits.

Builds the digits data that ships inside scikit-learn (no network), the split digits.1@50
(5 labels per class), an 8-copy augmented unlabelled set, then trains RealMix and the fully
supervised baseline on the same 50 labels and prints their test accuracies (median of the
last 10 reports) with wall times. Every step is printed as the command that runs it, so each
number can be reproduced by hand. Data goes to $ML_DATA (./data when unset), runs to
--train_dir (./experiments).

    make demo                       # creates .venv, installs, runs this
    python scripts/demo.py --quick  # a one-minute smoke run with a tiny schedule
"""

from libml.errors import cli_main
from libml.tables import output, steps

from absl import app, flags

import algorithms

flags.DEFINE_string('train_dir', './experiments', 'Where the two runs are written.')
flags.DEFINE_boolean('quick', False, 'A tiny schedule (a smoke test, not meaningful accuracies).')
FLAGS = flags.FLAGS

LABELS, SEED, VALID = 50, 1, 250


def main(argv):
    del argv
    algorithms.load()  # RealMix and Supervised are methods of the registry (libml/algorithm.py)
    steps.make_digits_split(SEED, LABELS)
    aug = steps.make_aug_copy('digits', SEED, LABELS, VALID)
    runs = [('RealMix', f'{aug}.{SEED}@{LABELS}-{VALID}'), ('Supervised', f'digits.{SEED}@{LABELS}-{VALID}')]
    schedule = steps.QUICK_SCHEDULE if FLAGS.quick else steps.DEMO_SCHEDULE
    results = [
        steps.train_method(method, dataset, FLAGS.train_dir, SEED, schedule, quiet=False) for method, dataset in runs
    ]
    for result in results:
        steps.run(['scripts/extract_accuracy.py', result['run_dir']])
    rows = [
        [method, LABELS, f'{r["accuracy"]:.1f}', f'{r["wall_s"] / 60:.1f} min'] for (method, _), r in zip(runs, results)
    ]
    print('\nTest accuracy on digits (500 test images), median of the last 10 reports:\n')
    print(output.markdown_table(['method', 'labels', 'test accuracy (%)', 'wall time'], rows))
    print('\nRuns (extract_accuracy.py wrote stats/accuracy.json in each):')
    for (method, _), r in zip(runs, results):
        print(f'  {method}: {r["run_dir"]}\n    {r["command"]}')


if __name__ == '__main__':
    app.run(cli_main(main))
