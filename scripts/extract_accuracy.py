#!/usr/bin/env python3
"""Median test accuracy over a run's last reports.

Usage: ./scripts/extract_accuracy.py experiments/<dataset>/<run>/

Reads RUN_DIR/tf/events* (tag accuracy_test), writes RUN_DIR/stats/accuracy.json with the
medians of the last 1, 10, 20 and 50 reported values (last01, last10, last20, last50) and
prints them.
"""

import json
import os

from libml.errors import UserError, cli_main
from libml.files import write_json
from libml.report.events import read_scalars
from libml.report.metrics import median_of_last

from absl import app

TAG = 'accuracy_test'


def main(argv):
    if len(argv) != 2:
        raise UserError('usage: scripts/extract_accuracy.py RUN_DIR (the folder holding tf/ and args/)')
    run_dir = argv[1]
    events_dir = os.path.join(run_dir, 'tf')
    if not os.path.isdir(events_dir):
        raise UserError(f'{events_dir} not found: pass a run folder such as experiments/<dataset>/<run>/')
    values = [v for _, v in read_scalars(events_dir, TAG)]
    if not values:
        raise UserError(f'no {TAG} values in {events_dir}/events*: has the run reported yet?')
    stats = median_of_last(values)
    write_json(os.path.join(run_dir, 'stats', 'accuracy.json'), stats, overwrite=True)
    print(json.dumps(stats, indent=2, sort_keys=True))


if __name__ == '__main__':
    app.run(cli_main(main))
