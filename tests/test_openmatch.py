"""openmatch.py: its loss on a fixed tiny batch (a linear model with a one-vs-all head) against numpy, the points
at which it selects inliers, and one tiny run on digits with half of the unlabelled images from other classes:
the outlier AUROCs it reports, its checkpointed inliers, inference and the SavedModel with outlier scores, an
exact resume after kill -9 (docs/algorithms.md#openmatch, #outlier-auroc).

The run's references are computed here from its checkpoint: the EMA model rebuilt and given the raw model's
batch-norm statistics by hand, its outputs turned into scores in numpy, the AUROC by scikit-learn.
"""

import csv
import glob
import json
import os
import subprocess
import sys

from libml import config, models
from libml.data.dataset import DataSet
from libml.data.names import unseen_path
from libml.report import evaluation
from libml.tables import steps
from libml.tables.cells import Cell, Table
from libml.tables.output import write_table

import numpy as np
import pytest
import tensorflow as tf
from conftest import (
    MISMATCH_DATASET,
    ROOT,
    TINY_TRAIN,
    assert_same_checkpoints,
    deterministic_env,
    kill_and_resume,
    read,
)
from linear_step import K, headed_setup, ova_loss_numpy, softmax, supervised, xent
from sklearn.metrics import roc_auc_score

import openmatch


def binary_entropy(p):
    return -p * np.log(p + 1e-8) - (1 - p) * np.log(1 - p + 1e-8)


@pytest.mark.parametrize('fix_on', [True, False])
def test_openmatch(fix_on):
    model, _, x, labels, u, u_labels, step = headed_setup(uratio=2, views=3)
    inliers = np.array([1, 0, 1, 1, 0, 1, 1, 0, 0, 1], np.float32)  # per image of a 10-image unlabelled file
    indices = np.array([7, 0, 3, 1, 9, 5, 2, 3])  # the images of the batch's 8 rows (image 3 twice)
    step = step._replace(state={'inliers': tf.Variable(inliers)})
    cfg = config.build(openmatch.OpenMatch, uratio=2, start_fix_kimg=0 if fix_on else 1)
    loss, stats = openmatch.OpenMatch(cfg, K).loss(
        step, (tf.constant(x), tf.constant(labels)), (tf.constant(u), tf.constant(u_labels), tf.constant(indices))
    )
    stats = {k: float(v) for k, v in stats.items()}
    w1, w2, strong = u[:, 0], u[:, 1], u[:, 2]
    (out1, in1), (out2, in2) = model.numpy_ova(w1), model.numpy_ova(w2)
    em = (binary_entropy(in1).mean() + binary_entropy(in2).mean()) / 2
    socr = (((out1 - out2) ** 2).sum(1) + ((in1 - in2) ** 2).sum(1)).mean()
    selected = inliers[indices] * fix_on
    q = softmax(model.numpy(w1))
    fix = (selected * xent(np.eye(K)[q.argmax(1)], model.numpy(strong))).sum() / max(selected.sum(), 1)
    ova = ova_loss_numpy(model, x, labels)
    assert stats['em'] == pytest.approx(em, rel=1e-5)
    assert stats['socr'] == pytest.approx(socr, rel=1e-5)
    assert stats['ova'] == pytest.approx(ova, rel=1e-5)
    assert stats['xeu'] == pytest.approx(fix, rel=1e-5) and (fix > 0) == fix_on
    assert stats['inliers'] == pytest.approx(0.6) and stats['mask'] == pytest.approx(selected.mean())
    expected = supervised(model, x, labels) + ova + 0.1 * em + 0.5 * socr + fix
    assert float(loss) == pytest.approx(expected, rel=1e-5)


def test_openmatch_selects_at_start_fix_then_every_select_kimg():
    algo = openmatch.OpenMatch(config.build(openmatch.OpenMatch, start_fix_kimg=2, select_kimg=3), K)
    steps = [(-1, 0)] + [(i, i + 512) for i in range(0, 12 << 10, 512)]
    assert [after >> 10 for before, after in steps if algo.refreshes(before, after)] == [2, 5, 8, 11]
    at_start = openmatch.OpenMatch(config.build(openmatch.OpenMatch, start_fix_kimg=0), K)
    assert at_start.refreshes(-1, 0) and not at_start.refreshes(0, 512) and at_start.refreshes(65024, 65536)


OPENMATCH = ['./openmatch.py', f'--dataset={MISMATCH_DATASET}', '--train_kimg=2', '--start_fix_kimg=1']
OPENMATCH += ['--select_kimg=1', '--outlier_sample=100000'] + TINY_TRAIN  # every unlabelled image of known class


@pytest.fixture(scope='session')
def openmatch_run(digits_mismatch, tmp_path_factory):
    """A 2-kimg OpenMatch run (selection at 1 and 2 kimg): (env, train_dir, run_dir, checkpoint prefix at 2 kimg)."""
    env = deterministic_env(digits_mismatch)
    train_dir = tmp_path_factory.mktemp('openmatch') / 'whole'
    subprocess.run(OPENMATCH + [f'--train_dir={train_dir}'], cwd=ROOT, env=env, check=True, capture_output=True)
    [run_dir] = glob.glob(str(train_dir / MISMATCH_DATASET / 'OpenMatch_*'))
    return env, train_dir, run_dir, os.path.join(run_dir, 'tf', 'model.ckpt-0000002048')


def ema_model(prefix, shape=(16, 16, 1), nclass=6):
    """The EMA model of checkpoint `prefix` with the raw model's batch-norm moving statistics, copied by hand."""
    build = lambda: models.create_model('resnet', nclass, shape, filters=8, repeat=1, heads=models.Heads(ova=True))
    raw, ema = build(), build()
    tf.train.Checkpoint(model=raw, ema_model=ema).read(prefix).expect_partial()
    for dst, src in zip(ema.variables, raw.variables):
        if not src.trainable:
            dst.assign(src)
    return ema


def outputs(model, images):
    """(probabilities [N, K], p_out [N, K]) in numpy of uint8 images [N, H, W, C]."""
    out = model.outputs(tf.constant(images.astype(np.float32) / 255 * 2 - 1), training=False)
    z, ova = out['logits'].numpy().astype(np.float64), out['ova'].numpy().astype(np.float64)
    e = np.exp(z - z.max(1, keepdims=True))
    k = z.shape[1]
    return e / e.sum(1, keepdims=True), 1 / (1 + np.exp(ova[:, k:] - ova[:, :k]))


def ova_score(probs, p_out):
    """OpenMatch's outlier score: p_out of the predicted class."""
    return p_out[np.arange(len(probs)), probs.argmax(1)]


def reported_aurocs(run_dir):
    """{set: {step: outlier AUROC}} as the run wrote them, read from its raw event files (not libml's reader)."""
    reported = {}
    for path in glob.glob(os.path.join(run_dir, 'tf', 'events*')):
        for raw in tf.data.TFRecordDataset(path):
            event = tf.compat.v1.Event.FromString(raw.numpy())
            for value in event.summary.value:
                if value.tag.startswith('outliers/auroc_'):
                    name = value.tag[len('outliers/auroc_') :]
                    reported.setdefault(name, {})[event.step] = float(tf.make_ndarray(value.tensor))
    return reported


def test_a_table_cell_reads_the_runs_aurocs_into_its_columns(digits_mismatch, openmatch_run, tmp_path, monkeypatch):
    """What reproduce.py does with each cell: the finished run is not trained again, the cell's AUROC per set is
    the median of the run's reports (here 1 and 2 kimg), and the table shows it in a column per set."""
    _, train_dir, run_dir, _ = openmatch_run
    monkeypatch.setenv('ML_DATA', str(digits_mismatch))
    result = steps.train('OpenMatch', OPENMATCH[1:] + [f'--train_dir={train_dir}'])
    assert result['run_dir'] == run_dir
    reported = reported_aurocs(run_dir)
    assert sorted(reported) == ['test_unseen', 'unlabelled'] and all(len(v) == 2 for v in reported.values())
    medians = {name: float(np.median(list(v.values()))) for name, v in reported.items()}
    assert result['aurocs'] == pytest.approx(medians, abs=1e-6)
    cell = Cell('OpenMatch', (('mismatch', '50%'),), 'digits6', 2, ())
    results = [dict(result, cell=cell, seed=1, change=0.0)]
    write_table(Table('t', 'Table t', ('mismatch',), None), results, str(tmp_path), quiet=True)
    header, row = open(tmp_path / 'table_t.md').read().splitlines()[2:5:2]
    assert '| outlier AUROC, unlabelled | outlier AUROC, test vs unseen |' in header
    for name in ('unlabelled', 'test_unseen'):
        assert f'| {result["aurocs"][name]:.3f} ' in row, (name, row)
    with open(tmp_path / 'table_t.csv') as f:
        [written] = list(csv.DictReader(f))
    assert float(written['auroc_test_unseen']) == pytest.approx(result['aurocs']['test_unseen'], abs=1e-4)


def test_report_aurocs_equal_scikit_learn_on_independent_scores(digits_mismatch, openmatch_run):
    env, _, run_dir, prefix = openmatch_run
    model = ema_model(prefix)
    unlabelled, unlabelled_labels = read(digits_mismatch / 'SSL' / 'digits6.1@50-unlabel.tfrecord')
    test, _ = read(digits_mismatch / 'digits6-test.tfrecord')
    unseen, _ = read(digits_mismatch / 'digits6-unseen.tfrecord')
    # Digits 0 and 1 became -1 under --label_order; 6 and 7 kept labels 4 and 5: every -1 is an outlier here.
    is_outlier = unlabelled_labels == -1
    assert 0 < is_outlier.sum() < len(is_outlier)
    expected = {
        'unlabelled': roc_auc_score(is_outlier, ova_score(*outputs(model, unlabelled))),
        'test_unseen': roc_auc_score(
            np.r_[np.zeros(len(test)), np.ones(len(unseen))], ova_score(*outputs(model, np.concatenate([test, unseen])))
        ),
    }
    reported = {name: values[2048] for name, values in reported_aurocs(run_dir).items()}
    assert reported.keys() == expected.keys()
    for name, value in expected.items():
        assert reported[name] == pytest.approx(value, abs=1e-6), name
    # --eval_ckpt restores the heads and prints the same AUROCs.
    out = subprocess.run(
        ['./openmatch.py', f'--eval_ckpt={prefix}', '--eval_batch=512'],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    ema_line = next(line for line in out.stdout.splitlines() if line.strip().startswith('ema'))
    for name, value in expected.items():
        assert f'auroc_{name} {value:6.4f}' in ema_line, ema_line
    # The default score of every other algorithm, 1 - max softmax, through the same evaluation code.
    dataset = DataSet.from_name(MISMATCH_DATASET, root=str(digits_mismatch))
    assert dataset.unseen_file == unseen_path('digits6', str(digits_mismatch))
    predictor = evaluation.Predictor(outlier_score='max_softmax')
    results = evaluation.evaluate(predictor, model, dataset, 512)
    aurocs = evaluation.outlier_aurocs(predictor, model, dataset, 512, 100000, results['test'])
    probs = outputs(model, unlabelled)[0]
    assert aurocs['unlabelled'] == pytest.approx(roc_auc_score(is_outlier, 1 - probs.max(1)), abs=1e-6)


def test_openmatch_state_is_the_selection_of_its_ema_model(digits_mismatch, openmatch_run):
    prefix = openmatch_run[3]
    inliers = tf.train.load_checkpoint(prefix).get_tensor('algorithm_state/inliers/.ATTRIBUTES/VARIABLE_VALUE')
    unlabelled, _ = read(digits_mismatch / 'SSL' / 'digits6.1@50-unlabel.tfrecord')
    expected = ova_score(*outputs(ema_model(prefix), unlabelled)) < 0.5  # selected at 2 kimg, saved with it
    assert inliers.shape == (len(unlabelled),) and 0 < expected.sum() < len(expected)
    np.testing.assert_array_equal(inliers, expected.astype(np.float32))


_LOADER = r"""
import json, sys
sys.path.insert(0, sys.argv[1])  # TensorFlow's site-packages only: no project module can be imported
import numpy as np
import tensorflow as tf
served = tf.saved_model.load(sys.argv[2])
blobs = [tf.io.read_file(path) for path in json.loads(sys.argv[3])]
out = served.signatures['serving_default'](images=tf.stack(blobs))
print(json.dumps({k: v.numpy().tolist() if v.dtype != tf.string else [s.decode() for s in v.numpy()]
                  for k, v in out.items()}))
"""


def test_saved_model_and_inference_give_probabilities_and_outlier_scores(digits_mismatch, openmatch_run, tmp_path):
    env, _, run_dir, prefix = openmatch_run
    folder = tmp_path / 'images'
    pictures, labels = read(digits_mismatch / 'digits6-unseen.tfrecord')
    files = []
    for i, picture in enumerate(pictures[:6]):
        path = folder / f'{i}.png'
        folder.mkdir(exist_ok=True)
        tf.io.write_file(str(path), tf.io.encode_png(picture))
        files.append(str(path))
    probs, p_out = outputs(ema_model(prefix), pictures[:6])
    plain = {k: v for k, v in env.items() if k != 'TF_DETERMINISTIC_OPS'}  # export's unseeded initial weights
    exported = subprocess.run(['scripts/export.py', run_dir], cwd=ROOT, env=plain, capture_output=True, text=True)
    assert exported.returncode == 0, exported.stderr
    site_packages = os.path.dirname(os.path.dirname(tf.__file__))
    environment = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    command = [sys.executable, '-S', '-c', _LOADER, site_packages, os.path.join(run_dir, 'export'), json.dumps(files)]
    proc = subprocess.run(command, cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    served = json.loads(proc.stdout.splitlines()[-1])
    assert sorted(served) == ['class_ids', 'class_names', 'classes', 'outlier_score', 'probabilities']
    np.testing.assert_allclose(served['probabilities'], probs, atol=1e-5)
    np.testing.assert_allclose(served['outlier_score'], ova_score(probs, p_out), atol=1e-5)
    # --perform_inference, from the checkpoint and from the SavedModel: an outlier_score column and its .npy.
    for source in (prefix, os.path.join(run_dir, 'export')):
        out = tmp_path / os.path.basename(source)
        command = ['./openmatch.py', '--perform_inference', f'--inference_dir={folder}', f'--inference_ckpt={source}']
        subprocess.run(command + [f'--inference_out={out}'], cwd=ROOT, env=env, check=True, capture_output=True)
        [table], [scores] = glob.glob(str(out / '*_pred.csv')), glob.glob(str(out / '*_pred_outlier.npy'))
        with open(table) as f:
            rows = list(csv.DictReader(f))
        np.testing.assert_allclose([float(r['outlier_score']) for r in rows], ova_score(probs, p_out), atol=1e-5)
        np.testing.assert_allclose(np.load(scores), ova_score(probs, p_out), atol=1e-5)


def test_openmatch_resumes_after_sigkill_exactly(openmatch_run, tmp_path):
    """Killed after its first checkpoint (the inliers selected at 1 kimg in it), resumed: the uninterrupted weights."""
    env, _, _, whole = openmatch_run
    resumed = kill_and_resume(OPENMATCH, tmp_path / 'killed', env)
    keys = assert_same_checkpoints(whole, resumed, ('model/', 'ema_model/', 'optimizer/', 'algorithm_state/'))
    assert 'algorithm_state/inliers/.ATTRIBUTES/VARIABLE_VALUE' in keys and any('open_set/ova' in k for k in keys)
