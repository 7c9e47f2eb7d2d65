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


def auroc(scores, is_outlier):
    """Area under the ROC curve of `scores` (higher = outlier) separating outliers from inliers, ties counting half.

    scores: [N] numbers; is_outlier: [N] bools (or 0/1). The Mann-Whitney statistic: the share of
    (outlier, inlier) pairs where the outlier scores higher, plus half the share of tied pairs, computed from
    average ranks; equals scikit-learn's `roc_auc_score(is_outlier, scores)`. NumPy (evaluation code; accepts
    tensors). Returns a python float, NaN when either group is empty.
    """
    scores = np.asarray(scores, np.float64).reshape(-1)
    positive = np.asarray(is_outlier).reshape(-1).astype(bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float('nan')
    order = np.argsort(scores, kind='stable')
    ordered = scores[order]
    starts = np.r_[0, np.flatnonzero(np.diff(ordered)) + 1]  # the first position of each run of equal scores
    ends = np.r_[starts[1:], len(scores)]
    ranks = np.empty(len(scores), np.float64)
    ranks[order] = np.repeat(0.5 * (starts + ends + 1), ends - starts)  # mean of the 1-based ranks start+1..end
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))
