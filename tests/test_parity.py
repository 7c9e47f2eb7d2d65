"""The parity harness against USB (scripts/parity/): its data export, its metrics, and, where USB's venv
exists (`make parity-env`), the step-level check and one cell of each side trained end to end."""

import json
import os

import numpy as np
import pytest
from conftest import ROOT, read, run_cli

from scripts.parity import curves, project_side, spec

SPLIT = 'digits.1@50-250'
USB_PYTHON = os.path.join(ROOT, '.venv-parity', 'bin', 'python')
needs_usb = pytest.mark.skipif(
    not os.path.exists(USB_PYTHON), reason="USB's venv .venv-parity is absent: `make parity-env` builds it"
)


def as_uint8(batches):
    """(uint8 images, labels) of an eval pipeline's [-1, 1] batches."""
    images, labels = zip(*[(x.numpy(), y.numpy()) for x, y in batches])
    return np.round((np.concatenate(images) + 1) / 2 * 255).astype(np.uint8), np.concatenate(labels)


def test_split_arrays_are_the_images_the_project_trains_and_tests_on(digits, tmp_path):
    arrays = project_side.split_arrays(SPLIT)
    np.savez(tmp_path / 'split.npz', **arrays)  # as the harness hands them to USB
    with np.load(tmp_path / 'split.npz') as f:
        exported = dict(f)
    ds = project_side.dataset(SPLIT)
    for key, pipeline in (('lb', ds.eval_labelled(64)), ('test', ds.eval_test(64))):
        images, labels = as_uint8(pipeline)
        np.testing.assert_array_equal(exported[f'x_{key}'], images)
        np.testing.assert_array_equal(exported[f'y_{key}'], labels)
    # The unlabelled images: the unlabel file less its 250 validation images, in file order.
    images, labels = read(digits / 'SSL' / 'digits.1@50-unlabel.tfrecord')
    np.testing.assert_array_equal(exported['x_ulb'], images[250:])
    np.testing.assert_array_equal(exported['y_ulb'], labels[250:])
    assert len(exported['x_ulb']) == ds.unlabel_count
    assert exported['x_lb'].dtype == np.uint8 and exported['x_lb'].shape[1:] == ds.shape
    assert int(exported['nclass']) == ds.nclass == 10


def test_schedule_gives_the_project_the_cells_recipe():
    flags = spec.TINY.project_flags(spec.ALGORITHMS['fixmatch'])
    assert '--train_kimg=1' in flags and '--uratio=7' in flags and '--batch=16' in flags
    assert spec.TINY.steps == 64 and spec.TINY.report_steps == 64
    assert '--smoothing=0' in spec.TABLE_D.project_flags(spec.ALGORITHMS['fullysupervised'])
    with pytest.raises(ValueError, match='whole numbers of batches'):
        spec.Schedule(kimg=1, batch=48)


def test_harness_methods_are_the_registrys_with_its_flags_then_the_harnesss():
    for harness in spec.ALGORITHMS.values():
        algorithm, _ = project_side.project_config(harness.method, ['--dataset=x.1@1-0'])
        assert algorithm is project_side.method(harness.method).algorithm
    hp = project_side.project_config('MixMatch', ['--dataset=x.1@1-0', *spec.ALGORITHMS['mixmatch'].flags])[1].hp
    assert (hp.tsa, hp.percent_mask, hp.warmup_kimg, hp.w_match) == ('none', -1, 32, 25)  # w_match: table d's
    supervised = project_side.project_config('Supervised', ['--dataset=x.1@1-0', '--smoothing=0'])[1]
    assert supervised.hp.smoothing == 0  # the method's 0.001, set again by the harness (USB has no smoothing)


def test_curve_metrics():
    result = dict(
        curve=[(1024 * i, a) for i, a in enumerate([10, 50, 80, 90, 91, 92], 1)],
        cpu=[(1024 * i, 60.0 * i) for i in range(1, 7)],
        img_per_sec=[(1024 * i, r) for i, r in enumerate([5, 100, 110, 90, 100, 100], 1)],
    )
    assert curves.accuracy(result) == 85.0  # the median of the (only 6) reports
    assert curves.cpu_to_share(result) == 240.0  # the first report >= 0.95 * 85 = 80.75: the 4th
    assert curves.throughput(result) == 100.0  # the first period (start-up) left out
    assert curves.paired({1: 80.0, 2: 82.0}, {1: 79.0, 2: 80.0, 3: 70.0}) == '+1.5 ± 0.5 (2)'
    later = dict(result, curve=[(i, a - 5 * (i == 2048)) for i, a in result['curve']])  # USB 5 points behind at 2 kimg
    assert curves.largest_gap({1: result}, {1: later}) == '+5.0 @ 2 kimg'


@needs_usb
def test_step_check_equals_usb_for_supervised_and_fixmatch(tmp_path):
    out = tmp_path / 'step.json'
    run_cli(['-m', 'scripts.parity.step_check', '--algorithms=fullysupervised,fixmatch', f'--json={out}'])
    rows = {(r['algorithm'], r['variant']): r for r in json.loads(out.read_text())}
    for name in ('fullysupervised', 'fixmatch'):  # FixMatch: one forward of the whole batch on both sides
        row = rows[name, 'as is']
        assert row['dloss'] < 1e-5 and row['dgrad'] < 1e-4 and row['verdict'] == 'equal', row


@needs_usb
def test_one_usb_cell_and_one_project_cell_train_end_to_end(digits, tmp_path):
    args = ['-m', 'scripts.parity.table', '--quick', '--dataset=digits', '--labels=50', '--valid=250']
    args += ['--algorithms=fixmatch', f'--train_dir={tmp_path / "exp"}', f'--out_dir={tmp_path / "out"}']
    run_cli(args, ml_data=digits)
    results = json.loads((tmp_path / 'out' / 'results.json').read_text())
    assert sorted(r['cell']['side'] for r in results.values()) == ['project', 'usb']
    for result in results.values():
        assert result['curve'][-1][0] == 1024 and 0 <= result['accuracy'] <= 100
        assert result['cpu'][-1][1] > 0 and result['img_per_sec'][-1][1] > 0
    assert '| fixmatch |' in (tmp_path / 'out' / 'table.md').read_text()
    assert (tmp_path / 'out' / 'curves.png').stat().st_size > 0
    again = run_cli(args, ml_data=digits).stdout  # finished cells are not trained again
    assert '== usb' not in again and '== project' not in again
