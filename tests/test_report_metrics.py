"""Metrics and medians of the last reports (libml/report/metrics.py)."""

from libml.report import metrics

import numpy as np
import pytest
import tensorflow as tf
from sklearn.metrics import roc_auc_score


def test_median_of_recent_uses_the_last_reports_up_to_the_step():
    history = {1024: 10.0, 2048: 30.0, 3072: 20.0, 4096: 90.0}
    assert metrics.median_of_recent(history, 3072, count=2) == 25.0  # 30 and 20; 4096 is later
    assert metrics.median_of_recent(history, 3072, count=10) == 20.0  # 10, 30, 20
    assert np.isnan(metrics.median_of_recent(history, 512))


SCORES = np.array([0.1, 0.4, 0.35, 0.8, 0.4, 0.4, 0.9, 0.1, 0.55, 0.35, 0.8, 0.2])
OUTLIER = np.array([0, 0, 1, 1, 1, 0, 1, 0, 0, 1, 0, 1], bool)


def test_auroc_matches_scikit_learn_with_ties():
    assert metrics.auroc(SCORES, OUTLIER) == pytest.approx(roc_auc_score(OUTLIER, SCORES), abs=1e-12)
    assert metrics.auroc(tf.constant(SCORES, tf.float32), tf.constant(OUTLIER)) == pytest.approx(
        roc_auc_score(OUTLIER, SCORES.astype(np.float32)), abs=1e-12
    )


def test_auroc_by_hand_and_edges():
    # Pairs (outlier, inlier): (0.5, 0.2) 1, (0.5, 0.5) 1/2, (0.9, 0.2) 1, (0.9, 0.5) 1 -> 3.5 / 4.
    assert metrics.auroc([0.2, 0.5, 0.5, 0.9], [0, 1, 0, 1]) == 0.875
    assert metrics.auroc([1, 2, 3], [1, 1, 1]) != metrics.auroc([1, 2, 3], [1, 1, 1])  # NaN: no inlier
    assert metrics.auroc([0.3, 0.3], [0, 1]) == 0.5  # all tied
    assert metrics.auroc([0.1, 0.9], [0, 1]) == 1.0 and metrics.auroc([0.9, 0.1], [0, 1]) == 0.0
