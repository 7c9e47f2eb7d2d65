"""Classification metrics and the medians of a run's last reports, as pure numpy/scikit-learn functions."""

import numpy as np
from sklearn.metrics import precision_recall_fscore_support


def accuracy(labels, predictions):
    """Percentage of `predictions` [N] equal to `labels` [N]; 0 for empty input."""
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    return 100.0 * float(np.mean(labels == predictions)) if labels.size else 0.0


def per_class_accuracy(labels, predictions, nclass):
    """Accuracy (%) within each true class [nclass]; NaN for a class absent from `labels`."""
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    out = np.full(nclass, np.nan)
    for c in range(nclass):
        rows = labels == c
        if rows.any():
            out[c] = 100.0 * np.mean(predictions[rows] == c)
    return out


def precision_recall_f1(labels, predictions, nclass):
    """{'precision/macro': .., 'recall/weighted': .., 'f1_score/macro': ..} in [0, 1]."""
    out = {}
    for average in ('macro', 'weighted'):
        p, r, f, _ = precision_recall_fscore_support(
            labels, predictions, labels=list(range(nclass)), average=average, zero_division=0
        )
        out.update({f'precision/{average}': p, f'recall/{average}': r, f'f1_score/{average}': f})
    return out


def median_of_tail(values, count):
    """Median of the last `count` of `values` (a list of floats); NaN when there are none."""
    return float(np.median(values[-count:])) if len(values) else float('nan')


def median_of_last(values, counts=(1, 10, 20, 50)):
    """{'last01': median of the last value, 'last10': of the last 10, ...} of a list of floats; {} when empty."""
    return {f'last{n:02d}': median_of_tail(values, n) for n in counts if values}


def median_of_recent(history, step, count=10):
    """Median of the values of the `count` largest steps <= `step` in `history` {step: value}; NaN if none."""
    return median_of_tail([history[s] for s in sorted(s for s in history if s <= step)], count)
