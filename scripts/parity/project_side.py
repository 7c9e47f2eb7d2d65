"""The project's side of the parity harness, run in the project's venv.

Every import of a libml module below the top level (libml.data, libml.train, libml.report,
libml.tables) is in this file, so that a restructuring of libml changes this one place. The
methods are the registry's (`libml.algorithm.registered`, filled by importing the algorithm files
through `algorithms.load()`): a spec.Algorithm's `method` is a `Method` label ('FixMatch').
"""

import os

from libml import algorithm, cli
from libml.data.dataset import DataSet
from libml.data.records import decode_png, read_records
from libml.report.events import read_scalars
from libml.tables import steps
from libml.train import run_folder

import numpy as np

import algorithms

__all__ = ['dataset', 'make_split', 'method', 'project_config', 'split_arrays', 'train']


def method(label):
    """The registered `Method` called `label` (its algorithm class and flags); UserError if there is none."""
    algorithms.load()
    return algorithm.method(label)


def project_config(label, flags):
    """(`Algorithm` class, `Config`) of method `label` run with its own flags (`Method.flags()`), then `flags`."""
    found = method(label)
    return found.algorithm, cli.parse(found.algorithm, steps.merged_flags(found.flags(), flags))


def make_split(name, seed, labels, log=None):
    """Builds `<name>` and its split `<name>.<seed>@<labels>` under $ML_DATA unless they exist."""
    steps.ensure_split(name, seed, labels, log)


def dataset(name):
    """The project's `DataSet` of SSL split `name` (e.g. fashion_mnist.1@250-500), as its trainers open it."""
    return DataSet.from_name(name)


def _decoded(path, shape, keep):
    """(uint8 images [N, *shape], int64 labels [N]) of the records of `path` that `keep(labels) -> indices` selects."""
    records = list(read_records(path))
    labels = np.array([label for _, label in records], np.int64)
    keep = keep(labels)
    images = np.zeros((len(keep), *shape), np.uint8)
    for row, i in enumerate(keep):
        images[row] = decode_png(records[i][0])
    return images, labels[keep]


def split_arrays(name):
    """The images the project trains and tests on for SSL split `name` (e.g. fashion_mnist.1@250-500).

    Returns {x_lb, y_lb: the label file's labelled records; x_ulb, y_ulb: the unlabel file less its
    first `unlabel_skip` records (the validation images, never trained on; labels -1 where unknown,
    for monitors only); x_test, y_test: the test file's labelled records; nclass}. Images uint8
    [N, H, W, C], labels int64 [N], in file order, as `DataSet` reads them.
    """
    ds = dataset(name)
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

    harness = spec.ALGORITHMS[cell.algorithm]
    method(harness.method)  # registers the algorithm files' methods, which steps.train looks up by label
    flags = [f'--dataset={cell.dataset}', f'--train_dir={train_dir}', f'--seed={cell.seed}']
    flags += cell.schedule.project_flags(harness)
    result = steps.train(harness.method, flags, log)
    folder = run_folder.ckpt_dir(result['run_dir'])
    return dict(
        curve=result['curve'],
        cpu=read_scalars(folder, 'monitors/process_cpu_s'),
        img_per_sec=read_scalars(folder, 'monitors/img_per_sec'),
        command=result['command'],
        run_dir=os.path.relpath(result['run_dir'], train_dir),
    )
