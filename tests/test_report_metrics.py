"""Metrics and medians of the last reports (libml/report/metrics.py)."""

from libml.report import metrics

import numpy as np


def test_median_of_recent_uses_the_last_reports_up_to_the_step():
    history = {1024: 10.0, 2048: 30.0, 3072: 20.0, 4096: 90.0}
    assert metrics.median_of_recent(history, 3072, count=2) == 25.0  # 30 and 20; 4096 is later
    assert metrics.median_of_recent(history, 3072, count=10) == 20.0  # 10, 30, 20
    assert np.isnan(metrics.median_of_recent(history, 512))
