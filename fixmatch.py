#!/usr/bin/env python3
"""FixMatch (Sohn et al. 2020): confident predictions on a weak view teach a strongly augmented view.

    python fixmatch.py --dataset=cifar10.1@250-5000      # the paper's recipe: SGD, cosine decay, uratio 7

Strong view: the dataset's --augment, then RandAugment (2 random ops, random magnitudes) and Cutout.
"""

from libml import algorithm, cli, maths
from libml.config import hyper, non_negative, unit_interval

import tensorflow as tf


def share_where(hits, rows):
    """Share of the `rows` (bool [N]) where `hits` (bool [N]) holds: float32, NaN when no row is selected."""
    count = tf.reduce_sum(tf.cast(rows, tf.float32))
    hits = tf.reduce_sum(tf.cast(hits & rows, tf.float32))
    return tf.where(count > 0, hits / tf.maximum(count, 1.0), float('nan'))


class FixMatch(algorithm.Algorithm):
    """L = L_x + wu * mean_i [max q_i >= confidence] CE(argmax q_i, f(s)_i), q = sg p(f(w)).

    docs/algorithms.md#fixmatch
    """

    name = 'FixMatch'
    methods = (algorithm.Method('FixMatch', 'fixmatch', rank=20),)
    settings = (
        hyper('confidence', 0.95, 'Confidence threshold of the pseudo-labels.', unit_interval, 'in [0, 1)'),
        hyper('wu', 1.0, 'Weight of the unlabelled loss.', non_negative, '>= 0'),
    )
    loop_defaults = {'optimizer': 'sgd', 'lr': 0.03, 'lr_decay': 'cosine', 'wd': 0.0005, 'wd_mode': 'l2', 'uratio': 7}
    views = ('weak', 'strong')
    loss_names = ('xe', 'xeu')

    def loss(self, step, labelled, unlabelled):
        x, labels = labelled
        weak, strong = tf.unstack(unlabelled[0], axis=1)
        batch = x.shape[0]
        logits = algorithm.forward_interleaved(
            step.model, tf.split(tf.concat([x, weak, strong], 0), 1 + 2 * weak.shape[0] // batch)
        )
        logits = tf.concat(logits, 0)
        logits_x, logits_weak, logits_strong = tf.split(logits, [batch, weak.shape[0], strong.shape[0]])
        loss_xe = maths.supervised_loss(tf.one_hot(labels, self.nclass), logits_x)
        loss_xeu, mask, pseudo = maths.fixmatch_loss(logits_weak, logits_strong, self.hp.confidence)
        return loss_xe + self.hp.wu * loss_xeu, {
            'xe': loss_xe,
            'xeu': loss_xeu,
            'mask': tf.reduce_mean(mask),
            'label_accuracy': share_where(tf.equal(pseudo, unlabelled[1]), unlabelled[1] >= 0),
        }


if __name__ == '__main__':
    cli.main(FixMatch)
