"""The fast path: RealMix's compiled step is traced once; scripts/benchmark.py reports every figure."""

import json
import re

import numpy as np
import pytest
from absl import flags
from absl.testing import flagsaver

from conftest import run_cli
from libml import data, models

FLAGS = flags.FLAGS
if not FLAGS.is_parsed():
    FLAGS.mark_as_parsed()

TINY = dict(filters=8, repeat=1, batch=16, augment='svhn')


def test_realmix_compiled_step_is_traced_once(digits):
    import realmix  # defines RealMix's flags in this process (fs_mixup must not be imported next to it)
    with flagsaver.flagsaver(**TINY):
        trainer = realmix.RealMix(data.DataSet.from_name('digits.1@50-250'))
        streams = trainer.train_streams(0)
        step = trainer.compiled_step([s.element_spec for s in streams])
        for _ in range(4):
            stats = step(*[next(s) for s in streams])
        assert step.experimental_get_tracing_count() == 1
        assert int(trainer.images_seen.numpy()) == 4 * 16
        assert np.isfinite(float(stats['overall'])) and 0 < float(stats['wmatch']) < FLAGS.w_match


def test_forward_flops_count_convolutions_and_dense_layers():
    from scripts import benchmark
    model = models.create_model('convnet', 5, (8, 8, 1), filters=2, scales=1)
    # stem 1->2 at 8x8, 2->2 and 2->4 at 8x8 (3x3 kernels), dense 4->5
    expected = 2 * (64 * 2 * 9 * 1 + 64 * 2 * 9 * 2 + 64 * 4 * 9 * 2 + 4 * 5)
    assert benchmark.forward_flops(model, (8, 8, 1)) == expected
    assert benchmark.step_flops(10, batch=4, nu=2) == (10 * (8 + 36), 10 * 36)


def test_benchmark_prints_every_figure_and_writes_json(tmp_path):
    out_json = tmp_path / 'bench.json'
    args = ['scripts/benchmark.py', '--arch=resnet', '--img_size=8', '--channels=1', '--nclass=3', '--batch=4',
            '--filters=4', '--repeat=1', '--steps=1', '--records=16', '--nomixed_precision', '--xla',
            f'--json={out_json}']
    out = run_cli(args).stdout
    for name in ('input pipeline', 'realmix step', 'supervised step', 'evaluation'):
        assert re.search(rf'^{name} .*\d+\.\d img/s', out, re.M), out
    assert re.search(r'realmix step +float32 +xla=on .*GFLOP/s = +\d+\.\d% of peak', out), out
    assert re.search(r'peak float32: [\d.]+ GFLOP/s \(timed 2048x2048 matmul', out), out
    report = json.loads(out_json.read_text())
    names = [(r['name'], r.get('xla')) for r in report['results']]
    assert names == [('input_pipeline', None), ('realmix_step', True), ('supervised_step', True), ('evaluation', True)]
    step = report['results'][1]
    assert step['images'] == 12 and step['flops_per_s'] == pytest.approx(
        report['forward_flops_per_image'] * (2 * 4 + 3 * 12) / step['seconds'])
    assert set(report['ratios']) == {'realmix/supervised float32 xla=on', 'pipeline/realmix float32 xla=on'}
    again = run_cli(args, check=False)
    assert again.returncode == 1 and 'already exists' in again.stderr and 'Traceback' not in again.stderr


def test_benchmark_flag_errors():
    from scripts import benchmark
    from libml.utils import UserError
    for bad, words in ((dict(channels=2), '--channels=2'), (dict(strategy='multiworker'), 'one process'),
                       (dict(steps=0), 'must be positive')):
        with flagsaver.flagsaver(**bad), pytest.raises(UserError, match=words):
            benchmark.check_flags()
