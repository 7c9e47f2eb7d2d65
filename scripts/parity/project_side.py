"""The project's side of the parity harness, run in the project's venv.

Every import of a libml module other than the top-level ones (algorithm, config, maths, models,
cli) is in this file, so that the restructuring of libml into sub-packages changes this one place.
"""

import os

from libml import cli, data, rundir, workflow
from libml.events import read_scalars
from libml.utils import UserError, cli_main, data_dir, parse_int_list

import numpy as np

__all__ = [
    'METHODS',
    'UserError',
    'cli_main',
    'data_dir',
    'make_split',
    'parse_int_list',
    'project_config',
    'split_arrays',
    'train',
]

METHODS = workflow.METHODS


def project_config(method, flags):
    """(`Algorithm` class, `Config`) of the project's `method` (a METHODS label) run with `flags` after its own."""
    algorithm = workflow.algorithm_of(method)
    return algorithm, cli.parse(algorithm, workflow.with_defaults(METHODS[method][3], flags))


def make_split(name, seed, labels, log=None):
    """Builds `<name>` and its split `<name>.<seed>@<labels>` under $ML_DATA unless they exist."""
    workflow.make_split(name, seed, labels, log)


def _decoded(path, shape, keep):
    """(uint8 images [N, *shape], int64 labels [N]) of the records of `path` that `keep(labels) -> indices` selects."""
    records = list(data.read_records(path))
    labels = np.array([label for _, label in records], np.int64)
    keep = keep(labels)
    images = np.zeros((len(keep), *shape), np.uint8)
    for row, i in enumerate(keep):
        images[row] = data.decode_png(records[i][0])
    return images, labels[keep]


def split_arrays(dataset):
    """The images the project trains and tests on for SSL split `dataset` (e.g. fashion_mnist.1@250-500).

    Returns {x_lb, y_lb: the label file's labelled records; x_ulb, y_ulb: the unlabel file less its
    first `unlabel_skip` records (the validation images, never trained on; labels -1 where unknown,
    for monitors only); x_test, y_test: the test file's labelled records; nclass}. Images uint8
    [N, H, W, C], labels int64 [N], in file order, as `DataSet` reads them.
    """
    ds = data.DataSet.from_name(dataset)
    labelled = lambda labels: np.flatnonzero(labels >= 0)
    x_lb, y_lb = _decoded(ds.label_file, ds.shape, labelled)
    x_ulb, y_ulb = _decoded(ds.unlabel_file, ds.shape, lambda labels: np.arange(ds.unlabel_skip, len(labels)))
    x_test, y_test = _decoded(ds.test_file, ds.shape, labelled)
    return dict(x_lb=x_lb, y_lb=y_lb, x_ulb=x_ulb, y_ulb=y_ulb, x_test=x_test, y_test=y_test, nclass=ds.nclass)


def train(cell, train_dir, log=None):
    """Trains the project's side of `cell` (a spec.Cell) with its own trainer in a subprocess, as the tables do.

    A finished run is not trained again; an interrupted one resumes. Returns dict(curve [(images,
    test accuracy %)], cpu [(images, CPU seconds so far)], img_per_sec [(images, img/s of the last
    report period)], command).
    """
    from scripts.parity import spec

    algorithm = spec.ALGORITHMS[cell.algorithm]
    flags = [f'--dataset={cell.dataset}', f'--train_dir={train_dir}', f'--seed={cell.seed}']
    flags += cell.schedule.project_flags(algorithm)
    result = workflow.train(algorithm.method, flags, log)
    folder = rundir.ckpt_dir(result['run_dir'])
    return dict(
        curve=result['curve'],
        cpu=read_scalars(folder, 'monitors/process_cpu_s'),
        img_per_sec=read_scalars(folder, 'monitors/img_per_sec'),
        command=result['command'],
        run_dir=os.path.relpath(result['run_dir'], train_dir),
    )
