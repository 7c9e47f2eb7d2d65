"""What TensorBoard shows of a run: batch pictures, the test confusion matrix, the HParams dashboard, medians."""

import glob
import os

from libml import config
from libml.data.records import read_labels
from libml.report.reporter import Reporter, hparams
from libml.train import run

import numpy as np
import pytest
import tensorflow as tf
from plain import Plain
from tensorboard.compat.proto import event_pb2
from tensorboard.plugins.hparams import plugin_data_pb2

from fully_supervised.fs_baseline import FSBaseline

# --------------------------------------------------------------------------- pure parts


def parse_table(text):
    """(class names, int matrix) of a `pictures.confusion_table` Markdown table."""
    lines = text.strip().splitlines()
    names = [c.strip() for c in lines[0].strip('|').split('|')][1:]
    rows = [[c.strip() for c in line.strip('|').split('|')] for line in lines[2:]]
    assert [r[0] for r in rows] == [f'**{n}**' for n in names]
    return names, np.array([[int(v) for v in r[1:]] for r in rows])


# --------------------------------------------------------------------------- Algorithm.pictures


class Views(Plain):
    views = ('weak', 'weak', 'strong')


def partner_weights(mixed, sources):
    """For each mixed row, (partner j, lam) with mixed = lam * sources[i] + (1 - lam) * sources[j], by least squares.

    A row left as it is (its own partner) is reported as j = i.
    """
    out = []
    for i, row in enumerate(mixed):
        best = None
        for j in [i] + [j for j in range(len(sources)) if j != i]:
            other = sources[j]
            d, r = (sources[i] - other).ravel(), (row - other).ravel()
            lam = float(np.dot(r, d) / np.dot(d, d)) if np.any(d) else 1.0
            err = np.abs(lam * sources[i] + (1 - lam) * other - row).max()
            if best is None or err < best[2]:
                best = (j, lam, err)
        assert best[2] < 1e-5, f'row {i} is no mix of two source rows'
        out.append(best[:2])
    return out


def test_hparams_are_the_run_dir_settings_the_algorithm_ones_and_its_name():
    from realmix import RealMix

    values = hparams(config.build(RealMix, lr=0.01, w_match=10.0), RealMix)
    assert values['algorithm'] == 'RealMix' and values['lr'] == 0.01 and values['w_match'] == 10.0
    assert values['dataset'] == 'digits.1@50-250' and values['tsa'] == 'linear_schedule'
    assert {'batch', 'filters', 'seed', 'augment', 'train_kimg', 'uratio', 'optimizer'} <= set(values)
    assert not {'train_dir', 'eval_ckpt', 'inference_dir', 'xla', 'eval_batch'} & set(values)
    assert all(isinstance(v, (bool, int, float, str)) for v in values.values())


# --------------------------------------------------------------------------- a run's events


def read_events(folder):
    """[(step, tag, plugin, value proto, file index)] of every summary value in the events files of `folder`."""
    out = []
    for k, path in enumerate(sorted(glob.glob(os.path.join(folder, 'events*')))):
        for raw in tf.data.TFRecordDataset(path).as_numpy_iterator():
            event = event_pb2.Event.FromString(raw)
            out += [(event.step, v.tag, v.metadata.plugin_data.plugin_name, v, k) for v in event.summary.value]
    # Summaries written with TF2 carry the plugin name in the first event of a tag only.
    plugins = {}
    for _, tag, plugin, _, _ in out:
        plugins.setdefault(tag, plugin)
    return [(s, tag, plugins[tag], v, k) for s, tag, _, v, k in out]


def steps_of(events, tag):
    return [s for s, t, _, _, _ in events if t == tag]


def scalar(events, tag, step):
    [value] = [float(tf.make_ndarray(v.tensor)) for s, t, _, v, _ in events if t == tag and s == step]
    return value


# A run that trains in seconds: a tiny WRN, 16-image batches, 1 kimg reports.
TINY_SETTINGS = {
    'dataset': 'digits.1@50-250',
    'filters': 8,
    'repeat': 1,
    'batch': 16,
    'report_kimg': 1,
    'save_kimg': 1,
    'augment': 'svhn',
    'strategy': 'none',
}


def test_a_run_writes_pictures_confusion_matrix_hparams_and_medians_once_per_run_dir(digits, tmp_path):
    cfg = config.build(FSBaseline, **{**TINY_SETTINGS, 'train_dir': str(tmp_path), 'train_kimg': 2})
    trainer = run.train(cfg, FSBaseline)
    run_dir = config.run_dir(cfg, FSBaseline)
    folder = os.path.join(run_dir, 'tf')
    events = read_events(folder)
    plugins = {tag: plugin for _, tag, plugin, _, _ in events}
    assert {t for t, p in plugins.items() if p == 'images'} == {'pictures/labelled', 'confusion_matrix/test'}
    assert steps_of(events, 'pictures/labelled') == [1024]  # the first report only
    assert steps_of(events, 'confusion_matrix/test') == [1024, 2048]
    assert plugins['confusion_matrix/test_counts'] == 'text'

    test_labels = read_labels(str(digits / 'digits-test.tfrecord'))
    assert len(test_labels) == 500
    for step in (1024, 2048):
        [text] = [
            tf.make_ndarray(v.tensor).item().decode()
            for s, t, _, v, _ in events
            if t == 'confusion_matrix/test_counts' and s == step
        ]
        names, matrix = parse_table(text)
        assert names == [str(i) for i in range(10)]
        assert matrix.sum() == 500
        np.testing.assert_array_equal(matrix.sum(1), np.bincount(test_labels, minlength=10))  # rows = true class
        assert 100.0 * np.trace(matrix) / 500 == pytest.approx(scalar(events, 'accuracy_test', step), abs=1e-4)

    assert plugins['_hparams_/session_start_info'] == 'hparams'
    [start] = [v for _, t, _, v, _ in events if t == '_hparams_/session_start_info']
    info = plugin_data_pb2.HParamsPluginData.FromString(start.metadata.plugin_data.content).session_start_info
    assert info.hparams['algorithm'].string_value == 'FSBaseline'
    assert info.hparams['smoothing'].number_value == pytest.approx(0.001)
    assert info.hparams['filters'].number_value == 8
    assert 'train_record' not in info.hparams  # a setting of the baseline, not a hyper-parameter
    first, last = scalar(events, 'accuracy_test', 1024), scalar(events, 'accuracy_test', 2048)
    assert scalar(events, 'summary/accuracy_test_median10', 1024) == pytest.approx(first)
    assert scalar(events, 'summary/accuracy_test_median10', 2048) == pytest.approx((first + last) / 2)
    assert steps_of(events, 'summary/accuracy_valid_median10') == [1024, 2048]

    # A later session of the run dir (as after a resume): pictures again at its first report, hparams not
    # written twice, and the median taken over the earlier session's reports too.
    reporter = Reporter(trainer, run_dir)
    tags = reporter.report(3072, {'xe': 1.0, 'overall': 1.0}, 100.0)
    reporter.close()
    events = read_events(folder)
    assert len(glob.glob(os.path.join(folder, 'events*'))) == 2
    assert len([1 for _, t, _, _, _ in events if t == '_hparams_/session_start_info']) == 1
    assert steps_of(events, 'pictures/labelled') == [1024, 3072]
    assert tags['summary/accuracy_test_median10'] == pytest.approx(np.median([first, last, tags['accuracy_test']]))


def test_realmix_pictures_show_both_guessing_views_and_the_mixed_batch_and_leave_training_unchanged(digits, tmp_path):
    from realmix import RealMix

    cfg = config.build(RealMix, **{**TINY_SETTINGS, 'train_dir': str(tmp_path), 'train_kimg': 2})
    weights, images = {}, {}
    for shown in (False, True):
        trainer = run.make_trainer(cfg, RealMix)
        run_dir = str(tmp_path / f'pictures{shown}')
        os.makedirs(os.path.join(run_dir, 'tf'))
        reporter = Reporter(trainer, run_dir, pictures=shown)
        trainer.train(0, reporter, save=lambda images: None)  # pictures drawn at 1 kimg, between the two periods
        reporter.close()
        weights[shown] = [v.numpy() for v in trainer.model.variables]
        events = read_events(os.path.join(run_dir, 'tf'))
        images[shown] = {(t, s) for s, t, p, _, _ in events if p == 'images'}
    assert images[False] == set()
    assert images[True] == {('confusion_matrix/test', 1024), ('confusion_matrix/test', 2048)} | {
        (f'pictures/{name}', 1024)
        for name in ('labelled', 'unlabelled_weak_1', 'unlabelled_weak_2', 'mixed_labelled', 'mixed_unlabelled')
    }
    [start] = [v for _, t, _, v, _ in events if t == '_hparams_/session_start_info']
    info = plugin_data_pb2.HParamsPluginData.FromString(start.metadata.plugin_data.content).session_start_info
    assert info.hparams['algorithm'].string_value == 'RealMix' and info.hparams['w_match'].number_value == 75
    # The pictures' batches come from fresh pipelines: training saw the same batches, bit for bit.
    for without, with_pictures in zip(weights[False], weights[True]):
        np.testing.assert_array_equal(without, with_pictures)
