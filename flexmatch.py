#!/usr/bin/env python3
"""FlexMatch (Zhang et al. 2021): FixMatch with one threshold per class, lowered for the classes learnt least.

    python flexmatch.py --dataset=cifar10.1@250-5000      # FixMatch's recipe: SGD, cosine decay, uratio 7

State: the label each unlabelled image was last predicted with confidence >= --confidence (-1 = none
yet); a class's threshold grows with its share of them.
"""

from libml import algorithm, cli, maths, selection
from libml.config import hyper, non_negative, unit_interval

import tensorflow as tf


class FlexMatch(algorithm.Algorithm):
    """L = L_x + wu * mean_i [max q_i >= T_(argmax q_i)] CE(argmax q_i, f(s)_i), T_c = tau * M(beta_c).

    docs/algorithms.md#flexmatch
    """

    name = 'FlexMatch'
    methods = (algorithm.Method('FlexMatch', 'flexmatch', rank=21),)
    settings = (
        hyper(
            'confidence',
            0.95,
            'tau: the highest class threshold, and the confidence at which an image records its predicted class.',
            unit_interval,
            'in [0, 1)',
        ),
        hyper('wu', 1.0, 'Weight of the unlabelled loss.', non_negative, '>= 0'),
        hyper(
            'threshold_warmup',
            True,
            'Threshold warm-up: the images not yet recorded count against every class, keeping thresholds low early.',
        ),
    )
    loop_defaults = algorithm.FIXMATCH_LOOP
    views = ('weak', 'strong')
    loss_names = ('xe', 'xeu')

    def initial_state(self, unlabelled_count):
        return {'selected': selection.flexmatch_init(unlabelled_count)}

    def loss(self, step, labelled, unlabelled):
        hp, selected = self.hp, step.state['selected']
        logits_x, logits_weak, logits_strong = algorithm.weak_strong_logits(step, labelled, unlabelled)
        loss_xe = maths.supervised_loss(tf.one_hot(labelled[1], self.nclass), logits_x)
        unlabelled_loss = selection.flexmatch_loss(
            logits_weak, logits_strong, selected, hp.confidence, hp.threshold_warmup
        )
        indices, probs = algorithm.across_replicas(unlabelled[2], tf.nn.softmax(tf.cast(logits_weak, tf.float32)))
        algorithm.assign_state(
            step.state, {'selected': selection.flexmatch_update(selected, indices, probs, hp.confidence)}
        )
        return loss_xe + hp.wu * unlabelled_loss.loss, {
            'xe': loss_xe,
            'xeu': unlabelled_loss.loss,
            'mask': unlabelled_loss.monitors['mask'],
            'threshold': unlabelled_loss.monitors['class_thresholds'],
            'selected': tf.reduce_mean(tf.cast(selected >= 0, tf.float32)),
            'label_accuracy': algorithm.pseudo_label_accuracy(unlabelled_loss.labels, unlabelled[1]),
        }


if __name__ == '__main__':
    cli.main(FlexMatch)
