#!/usr/bin/env python3
"""FixMatch (Sohn et al. 2020): confident predictions on a weak view teach a strongly augmented view.

    python fixmatch.py --dataset=cifar10.1@250-5000      # the paper's recipe: SGD, cosine decay, uratio 7

Strong view: the dataset's --augment, then RandAugment (2 random ops, random magnitudes) and Cutout.
"""

from libml import algorithm, cli, maths
from libml.config import hyper, non_negative, unit_interval

import tensorflow as tf


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
    loop_defaults = algorithm.FIXMATCH_LOOP
    views = ('weak', 'strong')
    loss_names = ('xe', 'xeu')

    def loss(self, step, labelled, unlabelled):
        logits_x, logits_weak, logits_strong = algorithm.weak_strong_logits(step, labelled, unlabelled)
        loss_xe = maths.supervised_loss(tf.one_hot(labelled[1], self.nclass), logits_x)
        loss_xeu, mask, pseudo = maths.fixmatch_loss(logits_weak, logits_strong, self.hp.confidence)
        return loss_xe + self.hp.wu * loss_xeu, {
            'xe': loss_xe,
            'xeu': loss_xeu,
            'mask': tf.reduce_mean(mask),
            'label_accuracy': algorithm.pseudo_label_accuracy(pseudo, unlabelled[1]),
        }


if __name__ == '__main__':
    cli.main(FixMatch)
