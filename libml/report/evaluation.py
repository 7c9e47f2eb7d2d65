"""Evaluating a classifier on a `DataSet`: probabilities and outlier scores per split, outlier AUROCs, `--eval_ckpt`."""

from typing import NamedTuple

from libml import openset
from libml.errors import UserError, first_line
from libml.report import metrics

import numpy as np
import tensorflow as tf

# The image sets of the outlier AUROC (`outlier_aurocs`), reported as outliers/auroc_<set>.
OUTLIER_SETS = ('unlabelled', 'test_unseen')


class Predictions(NamedTuple):
    """A model's predictions on some images: labels [N] (as recorded), probabilities [N, K], outlier scores [N]."""

    labels: np.ndarray
    probs: np.ndarray
    scores: np.ndarray


class Predictor:
    """softmax(model(x)) and the outlier score of the model's outputs, in inference mode.

    One compiled function per model (`xla`: jit-compiled); `outlier_score`: a name of
    `openset.OUTLIER_SCORES` (the algorithm's).
    """

    def __init__(self, xla=False, outlier_score='max_softmax'):
        self.xla, self.outlier_score = xla, outlier_score
        self._functions = {}

    def function(self, model):
        """The compiled images [N, H, W, C] in [-1, 1] -> {'probabilities': [N, K], 'outlier_score': [N]} of `model`."""
        if id(model) not in self._functions:

            def predict(x):
                outputs = model.outputs(x, training=False)
                return {
                    'probabilities': tf.nn.softmax(outputs['logits']),
                    'outlier_score': openset.outlier_score(self.outlier_score, outputs),
                }

            self._functions[id(model)] = tf.function(predict, reduce_retracing=True, jit_compile=self.xla or None)
        return self._functions[id(model)]

    def predict(self, model, batches, nclass, what='evaluation data'):
        """`Predictions` of `model` over finite (images, labels) `batches`."""
        fn = self.function(model)
        labels, probs, scores = [], [], []
        for x, y in _read(batches, what):
            out = fn(x)
            probs.append(out['probabilities'].numpy())
            scores.append(out['outlier_score'].numpy())
            labels.append(y.numpy())
        if not probs:
            return Predictions(np.zeros([0], np.int64), np.zeros([0, nclass], np.float32), np.zeros([0], np.float32))
        return Predictions(np.concatenate(labels), np.concatenate(probs), np.concatenate(scores))


def _read(batches, what):
    """Iterates `batches`; a one-line UserError when the records cannot be decoded."""
    try:
        yield from batches
    except tf.errors.OpError as e:
        raise UserError(f'cannot read the {what} ({first_line(e)[:200]}): rebuild the file') from None


def evaluate(predictor, model, dataset, batch):
    """{'train_labeled' | 'valid' | 'test': `Predictions`} of `model`."""
    k = dataset.nclass
    out = {
        'train_labeled': predictor.predict(model, dataset.eval_labelled(batch), k, dataset.label_file),
        'test': predictor.predict(model, dataset.eval_test(batch), k, dataset.test_file),
    }
    valid = dataset.eval_valid(batch)
    if valid is not None:
        out['valid'] = predictor.predict(model, valid, k, 'validation records')
    return out


def accuracies(results):
    """{split: accuracy %} of `evaluate`'s results."""
    return {name: metrics.accuracy(r.labels, r.probs.argmax(1)) for name, r in results.items()}


def outlier_aurocs(predictor, model, dataset, batch, limit, test):
    """{'unlabelled' | 'test_unseen': AUROC} of the outlier score separating in-class from other-class images.

    unlabelled: at most `limit` training-unlabelled images of known class
    (`DataSet.eval_unlabelled_outliers`); test_unseen: the test images (`test`: their `Predictions`,
    in-class) against the unseen-class test file. A set is left out when it lacks either kind.
    """
    out = {}
    unlabelled = dataset.eval_unlabelled_outliers(batch, limit)
    if unlabelled is not None:
        batches, is_outlier = unlabelled
        scores = predictor.predict(model, batches, dataset.nclass, dataset.unlabel_file).scores
        out['unlabelled'] = metrics.auroc(scores, is_outlier)
    unseen = dataset.eval_unseen(batch)
    if unseen is not None:
        scores = predictor.predict(model, unseen, dataset.nclass, dataset.unseen_file).scores
        is_outlier = np.r_[np.zeros(len(test.scores), bool), np.ones(len(scores), bool)]
        out['test_unseen'] = metrics.auroc(np.r_[test.scores, scores], is_outlier)
    return {name: value for name, value in out.items() if np.isfinite(value)}


def eval_checkpoint(trainer, path, batch):
    """Prints the raw and EMA accuracy (%) of a checkpoint on labelled, valid and test data, and its outlier AUROCs.

    Returns {'raw': {split: accuracy, 'auroc_<set>': AUROC}, 'ema': {...}} (`outlier_aurocs`' sets).
    """
    trainer.restore(path, 'model')
    print(f'Checkpoint {path} ({int(trainer.images_seen.numpy()) >> 10} kimg)')
    predictor, out = Predictor(trainer.config.xla, trainer.algorithm.outlier_score), {}
    for label, model in (('raw', trainer.model), ('ema', trainer.ema_model)):
        results = evaluate(predictor, model, trainer.dataset, batch)
        limit = trainer.config.outlier_sample
        aurocs = outlier_aurocs(predictor, model, trainer.dataset, batch, limit, results['test'])
        out[label] = dict(accuracies(results), **{f'auroc_{name}': value for name, value in aurocs.items()})
        line = '  '.join(
            f'{name} {value:6.4f}' if name.startswith('auroc') else f'{name} {value:6.2f}'
            for name, value in out[label].items()
        )
        print(f'  {label:3s}  {line}', flush=True)
    return out
