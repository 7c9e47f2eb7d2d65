"""scripts/benchmark_workflow.py end to end on a tiny synthetic CIFAR-10 (200 training images)."""

import json

from libml.data import names as datanames
from libml.data.records import count_records

import pytest
from conftest import run_cli

# 75-80 s of make test's 15 minutes (2026-12-08): a benchmark's smoke run, left to `make test-all`.
pytestmark = pytest.mark.slow


@pytest.fixture(scope='module')
def tiny_run(tmp_path_factory):
    """One run of --images=200 --aug_copy=2 in a kept --workdir: (stdout, figures from --json, workdir)."""
    workdir = tmp_path_factory.mktemp('workflow')
    figures = workdir / 'figures.json'
    proc = run_cli(
        [
            'scripts/benchmark_workflow.py',
            '--images=200',
            '--aug_copy=2',
            f'--workdir={workdir}',
            f'--json={figures}',
            '--resume_at=1000000',
            '--batch=16',
        ]
    )
    return proc.stdout, json.loads(figures.read_text()), workdir


def test_every_stage_is_printed_with_its_figures(tiny_run):
    stdout, figures, _ = tiny_run
    stages = {row['stage']: row for row in figures['stages']}
    probes = [
        f'{stage}_{kind}'
        for kind in ('cached', 'streamed')
        for stage in ('resume_open', 'resume_0', 'resume_late', 'pipeline')
    ]
    assert list(stages) == ['archive', 'create_datasets', 'create_split', 'make_aug_copy', *probes]
    lines = {line.split()[0]: line for line in stdout.splitlines() if line.split() and line.split()[0] in stages}
    assert set(lines) == set(stages)
    # images: 200 train + 40 test; a split @50 (200 // 4); 150 clean + 2 x 150 augmented records
    assert [stages[s]['images'] for s in ('archive', 'create_datasets', 'create_split', 'make_aug_copy')] == [
        240,
        240,
        200,
        450,
    ]
    assert lines['make_aug_copy'].split()[1:2] == ['450']
    for kind in ('cached', 'streamed'):
        assert stages[f'resume_open_{kind}']['images'] == 300  # the clean head is never trained on
        assert stages[f'pipeline_{kind}']['images'] == 3 * 16 * 20  # 20 steps of 16 + 2 x 16
        assert 'start=1,000,000' in lines[f'resume_late_{kind}']
    assert 'in memory' in lines['resume_open_cached'] and 'streamed from the file' in lines['resume_open_streamed']
    for name, row in stages.items():
        assert row['seconds'] > 0 and row['peak_mb'] > 50, name


def test_the_counts_are_those_of_the_files(tiny_run):
    _, figures, workdir = tiny_run
    root = str(workdir / 'ml_data')
    assert count_records(datanames.train_path('cifar10', root)) == 200
    assert count_records(datanames.test_path('cifar10', root)) == 40
    label_file, unlabel_file, _ = datanames.split_paths('cifar10.1@50', root)
    assert (count_records(label_file), count_records(unlabel_file)) == (50, 150)
    assert count_records(datanames.split_paths('cifar10_aug2.1@50', root)[1]) == 450
    assert figures['labels'] == 50
