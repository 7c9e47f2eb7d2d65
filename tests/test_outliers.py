"""Open-set runs: the outlier AUROC of a real report, OpenMatch's state, inference, the SavedModel, kill -9 and resume.

One tiny OpenMatch run on digits with half of the unlabelled images from other classes is shared. References
are computed here from its checkpoint: the EMA model rebuilt and given the raw model's batch-norm statistics
by hand, its outputs turned into scores in numpy, the AUROC by scikit-learn.
"""

import csv
import glob
import json
import os
import shutil
import subprocess
import sys

from libml import models
from libml.data.dataset import DataSet, outlier_status
from libml.data.names import unseen_path
from libml.report import evaluation
from libml.serve import export

import numpy as np
import pytest
import tensorflow as tf
from conftest import (
    ROOT,
    TINY_TRAIN,
    assert_same_checkpoints,
    deterministic_env,
    kill_and_resume,
    read,
    run_cli,
)
from sklearn.metrics import roc_auc_score

INLIERS, UNLABELLED, OTHERS = '2,3,4,5,6,7', '0,1,6,7', '0,1,8,9'  # 50% mismatch, the README's protocol
DATASET = 'digits6.1@50-0'
OPENMATCH = ['./openmatch.py', f'--dataset={DATASET}', '--train_kimg=2', '--start_fix_kimg=1', '--select_kimg=1']
OPENMATCH += ['--outlier_sample=100000'] + TINY_TRAIN  # every unlabelled image of known class, no sample


@pytest.fixture(scope='session')
def mismatch(digits_source, tmp_path_factory):
    """$ML_DATA with digits6: labelled and test classes 2-7 (renumbered 0-5), unlabelled 0,1,6,7, unseen 0,1,8,9."""
    root = tmp_path_factory.mktemp('mismatch_ml_data')
    shutil.copytree(digits_source, root, dirs_exist_ok=True)
    order = f'--label_order={INLIERS}'
    for part, keep in (('label', INLIERS), ('unlabel', UNLABELLED)):
        source, target = root / 'SSL' / f'digits.1@50-{part}.tfrecord', root / 'SSL' / f'digits6.1@50-{part}.tfrecord'
        run_cli(
            [
                'filter_dataset.py',
                f'--class_filter={keep}',
                order,
                f'--filter_dataset={source}',
                f'--save_name={target}',
            ]
        )
    for name, keep in (('digits6-test', INLIERS), ('digits6-unseen', OTHERS)):
        source = root / 'digits-test.tfrecord'
        run_cli(
            ['filter_dataset.py', f'--class_filter={keep}', order, f'--filter_dataset={source}', f'--save_name={name}']
        )
    return root


@pytest.fixture(scope='session')
def openmatch_run(mismatch, tmp_path_factory):
    """A 2-kimg OpenMatch run (selection at 1 and 2 kimg): (env, train_dir, run_dir, checkpoint prefix at 2 kimg)."""
    env = deterministic_env(mismatch)
    train_dir = tmp_path_factory.mktemp('openmatch') / 'whole'
    subprocess.run(OPENMATCH + [f'--train_dir={train_dir}'], cwd=ROOT, env=env, check=True, capture_output=True)
    [run_dir] = glob.glob(str(train_dir / DATASET / 'OpenMatch_*'))
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


def test_report_aurocs_equal_scikit_learn_on_independent_scores(mismatch, openmatch_run):
    env, _, run_dir, prefix = openmatch_run
    model = ema_model(prefix)
    unlabelled, unlabelled_labels = read(mismatch / 'SSL' / 'digits6.1@50-unlabel.tfrecord')
    test, _ = read(mismatch / 'digits6-test.tfrecord')
    unseen, _ = read(mismatch / 'digits6-unseen.tfrecord')
    # Digits 0 and 1 became -1 under --label_order; 6 and 7 kept labels 4 and 5: every -1 is an outlier here.
    is_outlier = unlabelled_labels == -1
    assert 0 < is_outlier.sum() < len(is_outlier)
    expected = {
        'unlabelled': roc_auc_score(is_outlier, ova_score(*outputs(model, unlabelled))),
        'test_unseen': roc_auc_score(
            np.r_[np.zeros(len(test)), np.ones(len(unseen))], ova_score(*outputs(model, np.concatenate([test, unseen])))
        ),
    }
    reported = {}
    for path in glob.glob(os.path.join(run_dir, 'tf', 'events*')):
        for raw in tf.data.TFRecordDataset(path):
            event = tf.compat.v1.Event.FromString(raw.numpy())
            for value in event.summary.value:
                if value.tag.startswith('outliers/auroc_') and event.step == 2048:
                    reported[value.tag[len('outliers/auroc_') :]] = float(tf.make_ndarray(value.tensor))
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
    dataset = DataSet.from_name(DATASET, root=str(mismatch))
    assert dataset.unseen_file == unseen_path('digits6', str(mismatch))
    predictor = evaluation.Predictor(outlier_score='max_softmax')
    results = evaluation.evaluate(predictor, model, dataset, 512)
    aurocs = evaluation.outlier_aurocs(predictor, model, dataset, 512, 100000, results['test'])
    probs = outputs(model, unlabelled)[0]
    assert aurocs['unlabelled'] == pytest.approx(roc_auc_score(is_outlier, 1 - probs.max(1)), abs=1e-6)


def test_openmatch_state_is_the_selection_of_its_ema_model(mismatch, openmatch_run):
    prefix = openmatch_run[3]
    inliers = tf.train.load_checkpoint(prefix).get_tensor('algorithm_state/inliers/.ATTRIBUTES/VARIABLE_VALUE')
    unlabelled, _ = read(mismatch / 'SSL' / 'digits6.1@50-unlabel.tfrecord')
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


def test_openmatch_saved_model_and_inference_give_probabilities_and_outlier_scores(mismatch, openmatch_run, tmp_path):
    env, _, run_dir, prefix = openmatch_run
    folder = tmp_path / 'images'
    pictures, labels = read(mismatch / 'digits6-unseen.tfrecord')
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


def test_outlier_status_by_hand():
    labels = [0, 3, -1, -1, 2, -1]
    source = [5, 9, 8, -1, 7, 4]  # labels before --label_order: 8 and 4 became -1, the -1 was unlabelled already
    np.testing.assert_array_equal(outlier_status(labels, None, [0, 2]), [0, 1, -1, -1, 0, -1])
    np.testing.assert_array_equal(outlier_status(labels, source, [0, 2]), [0, 1, 1, -1, 0, 1])


def test_unlabelled_outlier_sample_is_fixed_and_bounded(mismatch):
    dataset = DataSet.from_name(DATASET, root=str(mismatch))
    _, everyone = dataset.eval_unlabelled_outliers(512, 100000)
    batches, is_outlier = dataset.eval_unlabelled_outliers(100, 50)
    again = dataset.eval_unlabelled_outliers(100, 50)[1]
    assert len(everyone) == dataset.unlabel_count and len(is_outlier) == 50
    np.testing.assert_array_equal(is_outlier, again)
    assert sum(len(y) for _, y in batches) == 50 and 0 < is_outlier.sum() < 50
    assert dataset.eval_unlabelled_outliers(100, 0) is None


def test_iomatch_export_serves_the_open_heads_outlier_probability(tmp_path):
    heads = models.Heads(ova=True, open=True, projection=16)
    build = lambda: models.create_model('resnet', 4, (8, 8, 3), filters=8, repeat=1, heads=heads)
    raw, ema = build(), build()
    for variable in raw.variables:  # batch-norm statistics the export must copy into the EMA model
        if not variable.trainable:
            variable.assign(tf.random.uniform(variable.shape, 0.5, 2.0))
    run_dir = tmp_path / 'IOMatch_run'
    prefix = tf.train.Checkpoint(model=raw, ema_model=ema).write(str(run_dir / 'tf' / 'model.ckpt-0000001024'))
    _, shapes = export.read_checkpoint(prefix)
    assert export.heads_from_checkpoint(shapes) == heads
    info = export.export(str(run_dir), img_size=8, log=lambda _: None)
    assert info['outlier_score'] == 'open'
    x = np.random.default_rng(0).uniform(-1, 1, (5, 8, 8, 3)).astype(np.float32)
    for dst, src in zip(ema.variables, raw.variables):
        if not src.trainable:
            dst.assign(src)
    z = ema.outputs(tf.constant(x), training=False)['open'].numpy().astype(np.float64)
    expected = np.exp(z[:, -1]) / np.exp(z).sum(1)
    served = export.load_serving(info['out']).model_range(x)
    np.testing.assert_allclose(served['outlier_score'], expected, atol=1e-5)
