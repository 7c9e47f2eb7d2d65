#!/usr/bin/env python3
"""The embedded demo: RealMix vs a supervised baseline on 50 labelled handwritten digits.

Builds the digits data that ships inside scikit-learn (no network), the split digits.1@50
(5 labels per class), an 8-copy augmented unlabelled set, then trains RealMix and the
fully supervised baseline on the same 50 labels and prints their test accuracies (median of
the last 10 reports) with wall times. Every step is printed as the command that runs it.
Data goes to $ML_DATA (./data when unset), runs to --train_dir (./experiments).

    make demo                      # creates .venv, installs, runs this
    python scripts/demo.py --quick # a one-minute smoke run with a tiny schedule
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

from libml import workflow  # noqa: E402
from libml.utils import cli_main, data_dir  # noqa: E402

flags.DEFINE_string('train_dir', './experiments', 'Where the two runs are written.')
flags.DEFINE_boolean('quick', False, 'A tiny schedule (a smoke test, not meaningful accuracies).')
FLAGS = flags.FLAGS

LABELS, SEED, VALID, AUG_COPIES = 50, 1, 250, 8

# The schedule, scaled from the paper's (WRN-28-2, 1<<16 kimg) to ~10 minutes on 2 CPU cores.
SCHEDULE = ['--filters=16', '--repeat=2', '--train_kimg=192', '--report_kimg=8', '--save_kimg=64']
QUICK = ['--filters=8', '--repeat=1', '--batch=16', '--train_kimg=2', '--report_kimg=1', '--save_kimg=1']
REALMIX = ['--augment=svhn', '--ema=0.99', '--warmup_kimg=64', '--w_match=75', '--beta=0.75',
           '--tsa=linear_schedule', '--percent_mask=0.25']
BASELINE = ['--augment=svhn', '--ema=0.99', '--smoothing=0.001']


def prepare_data(root):
    """digits, digits.1@50 and digits_aug8.1@50 under `root`, each built once."""
    workflow.ensure(os.path.join(root, 'digits-train.tfrecord'), ['scripts/create_datasets.py', 'digits'])
    workflow.ensure(os.path.join(root, 'SSL', f'digits.{SEED}@{LABELS}-label.tfrecord'),
                    ['scripts/create_split.py', f'--seed={SEED}', f'--label_split_size={LABELS}',
                     os.path.join(root, 'SSL', 'digits'), os.path.join(root, 'digits-train.tfrecord')])
    workflow.ensure(os.path.join(root, 'SSL', f'digits_aug{AUG_COPIES}.{SEED}@{LABELS}-unlabel.tfrecord'),
                    ['scripts/make_aug_copy.py', f'--aug_dataset=digits.{SEED}@{LABELS}',
                     f'--aug_copy={AUG_COPIES}', '--augment=svhn', f'--valid_size={VALID}'])


def main(argv):
    del argv
    root = data_dir()
    prepare_data(root)
    schedule = QUICK if FLAGS.quick else SCHEDULE
    common = [f'--train_dir={FLAGS.train_dir}'] + schedule
    runs = [
        ('RealMix', 'realmix.py', [f'--dataset=digits_aug{AUG_COPIES}.{SEED}@{LABELS}-{VALID}'] + REALMIX),
        ('Supervised', 'fully_supervised/fs_baseline.py', [f'--dataset=digits.{SEED}@{LABELS}-{VALID}'] + BASELINE),
    ]
    rows, results = [], []
    for method, script, flags_ in runs:
        print(f'\n== {method} ==', flush=True)
        result = workflow.train(script, common + flags_, quiet=False)
        results.append(result)
        rows.append([method, LABELS, f'{result["accuracy"]:.1f}', f'{result["wall_s"] / 60:.1f} min'])
    print('\nTest accuracy on digits (500 test images), median of the last 10 reports:\n')
    print(workflow.markdown_table(['method', 'labels', 'test accuracy (%)', 'wall time'], rows))
    print('\nRuns (extract_accuracy.py wrote stats/accuracy.json in each):')
    for (method, _, _), result in zip(runs, results):
        print(f'  {method}: {result["run_dir"]}')


if __name__ == '__main__':
    app.run(cli_main(main))
