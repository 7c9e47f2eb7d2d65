"""Evaluating a classifier on a `DataSet`: probabilities per split, and `--eval_ckpt`."""

from libml.errors import UserError, first_line
from libml.report import metrics

import numpy as np
import tensorflow as tf


class Predictor:
    """softmax(model(x)) in inference mode, one compiled function per model (`xla`: jit-compiled)."""

    def __init__(self, xla=False):
        self.xla = xla
        self._functions = {}

    def function(self, model):
        """The compiled images [N, H, W, C] in [-1, 1] -> probabilities [N, K] of `model`."""
        if id(model) not in self._functions:
            self._functions[id(model)] = tf.function(
                lambda x: tf.nn.softmax(model(x, training=False)), reduce_retracing=True, jit_compile=self.xla or None
            )
        return self._functions[id(model)]

    def predict(self, model, batches, nclass, what='evaluation data'):
        """(labels [N], probabilities [N, K]) of `model` over finite (images, labels) `batches`."""
        fn = self.function(model)
        labels, probs = [], []
        for x, y in _read(batches, what):
            probs.append(fn(x).numpy())
            labels.append(y.numpy())
        if not probs:
            return np.zeros([0], np.int64), np.zeros([0, nclass], np.float32)
        return np.concatenate(labels), np.concatenate(probs)


def _read(batches, what):
    """Iterates `batches`; a one-line UserError when the records cannot be decoded."""
    try:
        yield from batches
    except tf.errors.OpError as e:
        raise UserError(f'cannot read the {what} ({first_line(e)[:200]}): rebuild the file') from None


def evaluate(predictor, model, dataset, batch):
    """{'train_labeled' | 'valid' | 'test': (labels [N], probabilities [N, K])} of `model`."""
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
    return {name: metrics.accuracy(y, p.argmax(1)) for name, (y, p) in results.items()}


def eval_checkpoint(trainer, path, batch):
    """Prints the raw and EMA accuracy (%) of a checkpoint on labelled, valid and test data.

    Returns {'raw': {split: accuracy}, 'ema': {...}}.
    """
    trainer.restore(path, 'model')
    print(f'Checkpoint {path} ({int(trainer.images_seen.numpy()) >> 10} kimg)')
    predictor, out = Predictor(trainer.config.xla), {}
    for label, model in (('raw', trainer.model), ('ema', trainer.ema_model)):
        out[label] = accuracies(evaluate(predictor, model, trainer.dataset, batch))
        line = '  '.join(f'{name} {value:6.2f}' for name, value in out[label].items())
        print(f'  {label:3s}  {line}', flush=True)
    return out
