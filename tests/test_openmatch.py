"""openmatch.py: the loss on a fixed tiny batch against numpy and when the inliers are re-selected
(docs/algorithms.md#openmatch)."""

from libml import config

import numpy as np
import pytest
import tensorflow as tf
from linear_step import K, headed_setup, ova_loss_numpy, softmax, supervised, xent

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
