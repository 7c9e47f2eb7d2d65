#!/usr/bin/env python3
"""SoftMatch (Chen et al. 2023): every pseudo-label counts, weighted by a truncated Gaussian of its confidence.

    python softmatch.py --dataset=cifar10.1@250-5000      # FixMatch's recipe: SGD, cosine decay, uratio 7

State: EMAs of the mean prediction (for the uniform alignment) and of the mean and variance of the
aligned confidence (the Gaussian); a row at or above the mean weighs 1.
"""

from libml import algorithm, cli, maths, selection
from libml.config import hyper, non_negative, positive, unit_interval

import tensorflow as tf


class SoftMatch(algorithm.Algorithm):
    """L = L_x + wu * mean_i lambda_i CE(argmax q_i, f(s)_i), lambda_i = exp(-min(max q'_i - mu, 0)^2 n^2 / 2 var).

    docs/algorithms.md#softmatch
    """

    name = 'SoftMatch'
    methods = (algorithm.Method('SoftMatch', 'softmatch', rank=23),)
    settings = (
        hyper(
            'state_momentum',
            0.999,
            'Momentum of the EMAs of the mean prediction and of the mean and variance of the aligned confidence.',
            unit_interval,
            'in [0, 1)',
        ),
        hyper(
            'n_sigma',
            2.0,
            'Width of the Gaussian weight: its standard deviation is sqrt(var) / n_sigma.',
            positive,
            '> 0',
        ),
        hyper('wu', 1.0, 'Weight of the unlabelled loss.', non_negative, '>= 0'),
    )
    loop_defaults = algorithm.FIXMATCH_LOOP
    views = ('weak', 'strong')
    loss_names = ('xe', 'xeu')

    def initial_state(self, unlabelled_count):
        return selection.softmatch_init(self.nclass)._asdict()

    def loss(self, step, labelled, unlabelled):
        hp = self.hp
        logits_x, logits_weak, logits_strong = algorithm.weak_strong_logits(step, labelled, unlabelled)
        loss_xe = maths.supervised_loss(tf.one_hot(labelled[1], self.nclass), logits_x)
        (probs,) = algorithm.across_replicas(tf.nn.softmax(tf.cast(logits_weak, tf.float32)))
        state = selection.softmatch_update(selection.SoftMatchState(**step.state), probs, hp.state_momentum)
        algorithm.assign_state(step.state, state._asdict())  # this step's weights already use the updated state
        unlabelled_loss = selection.softmatch_loss(logits_weak, logits_strong, state, hp.n_sigma)
        return loss_xe + hp.wu * unlabelled_loss.loss, {
            'xe': loss_xe,
            'xeu': unlabelled_loss.loss,
            'mask': unlabelled_loss.monitors['mask'],
            'mu': unlabelled_loss.monitors['mu'],
            'var': unlabelled_loss.monitors['var'],
            'label_accuracy': algorithm.pseudo_label_accuracy(unlabelled_loss.labels, unlabelled[1]),
        }


if __name__ == '__main__':
    cli.main(SoftMatch)
