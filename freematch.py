#!/usr/bin/env python3
"""FreeMatch (Wang et al. 2023): FixMatch with a self-adaptive threshold, global and per class, and a fairness term.

    python freematch.py --dataset=cifar10.1@250-5000      # FixMatch's recipe: SGD, cosine decay, uratio 7

State: EMAs of the batch's mean confidence (the global threshold), of its mean prediction and of its
histogram of predicted classes.
"""

from libml import algorithm, cli, maths, selection
from libml.config import hyper, non_negative, unit_interval

import tensorflow as tf


class FreeMatch(algorithm.Algorithm):
    """L = L_x + wu * mean_i [max q_i >= T_(argmax q_i)] CE(argmax q_i, f(s)_i) + wf * L_fairness.

    docs/algorithms.md#freematch
    """

    name = 'FreeMatch'
    methods = (algorithm.Method('FreeMatch', 'freematch', rank=22),)
    settings = (
        hyper(
            'state_momentum',
            0.999,
            'Momentum of the EMAs of the mean confidence, mean prediction and class histogram.',
            unit_interval,
            'in [0, 1)',
        ),
        hyper('wu', 1.0, 'Weight of the unlabelled loss.', non_negative, '>= 0'),
        hyper('wf', 0.001, 'Weight of the self-adaptive fairness term.', non_negative, '>= 0'),
    )
    loop_defaults = algorithm.FIXMATCH_LOOP
    views = ('weak', 'strong')
    loss_names = ('xe', 'xeu', 'fairness')

    def initial_state(self, unlabelled_count):
        return selection.freematch_init(self.nclass)._asdict()

    def loss(self, step, labelled, unlabelled):
        hp = self.hp
        logits_x, logits_weak, logits_strong = algorithm.weak_strong_logits(step, labelled, unlabelled)
        loss_xe = maths.supervised_loss(tf.one_hot(labelled[1], self.nclass), logits_x)
        (probs,) = algorithm.across_replicas(tf.nn.softmax(tf.cast(logits_weak, tf.float32)))
        state = selection.freematch_update(selection.FreeMatchState(**step.state), probs, hp.state_momentum)
        algorithm.assign_state(step.state, state._asdict())  # this step's mask already uses the updated state
        unlabelled_loss = selection.freematch_loss(logits_weak, logits_strong, state)
        fairness = selection.freematch_fairness_loss(logits_strong, unlabelled_loss.mask, state)
        return loss_xe + hp.wu * unlabelled_loss.loss + hp.wf * fairness, {
            'xe': loss_xe,
            'xeu': unlabelled_loss.loss,
            'fairness': fairness,
            'mask': unlabelled_loss.monitors['mask'],
            'global_threshold': unlabelled_loss.monitors['threshold'],
            'threshold': unlabelled_loss.monitors['class_thresholds'],
            'label_accuracy': algorithm.pseudo_label_accuracy(unlabelled_loss.labels, unlabelled[1]),
        }


if __name__ == '__main__':
    cli.main(FreeMatch)
