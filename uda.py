#!/usr/bin/env python3
"""UDA (Xie et al. 2019): sharpened predictions on a weak view taught to a strong view, with TSA on the labelled loss.

    python uda.py --dataset=cifar10.1@250-5000      # FixMatch's recipe: SGD, cosine decay, uratio 7

Where RealMix's training signal annealing comes from. The authors' later CIFAR-10 script runs without
TSA: --tsa=none gives that configuration.
"""

from libml import algorithm, cli, maths, selection
from libml.config import hyper, non_negative, positive, unit_interval

import tensorflow as tf


class UDA(algorithm.Algorithm):
    """L = L_x(TSA) + wu * mean_i [max q_i > confidence] KL(sg softmax(f(w)_i / temperature) || p(f(s)_i)).

    docs/algorithms.md#uda
    """

    name = 'UDA'
    methods = (algorithm.Method('UDA', 'uda', rank=24),)
    settings = (
        hyper('confidence', 0.8, 'Rows whose weak-view confidence is above this count.', unit_interval, 'in [0, 1)'),
        hyper('temperature', 0.4, 'Softmax temperature of the weak-view targets (< 1 sharpens).', positive, '> 0'),
        hyper('wu', 1.0, 'Weight of the unlabelled loss.', non_negative, '>= 0'),
        hyper(
            'tsa',
            'linear_schedule',
            'Training signal annealing: labelled examples the model already predicts above a rising '
            'threshold are left out of the supervised loss.',
            choices=maths.TSA_SCHEDULES,
        ),
    )
    loop_defaults = algorithm.FIXMATCH_LOOP
    views = ('weak', 'strong')
    loss_names = ('xe', 'kl')

    def loss(self, step, labelled, unlabelled):
        hp = self.hp
        logits_x, logits_weak, logits_strong = algorithm.weak_strong_logits(step, labelled, unlabelled)
        targets = tf.one_hot(labelled[1], self.nclass)
        threshold = maths.tsa_threshold(hp.tsa, step.progress, self.nclass)
        mask_x = None if hp.tsa == 'none' else maths.tsa_mask(targets, tf.nn.softmax(logits_x), threshold)
        loss_xe = maths.supervised_loss(targets, logits_x, mask_x)
        unlabelled_loss = selection.uda_loss(logits_weak, logits_strong, hp.confidence, hp.temperature)
        return loss_xe + hp.wu * unlabelled_loss.loss, {
            'xe': loss_xe,
            'kl': unlabelled_loss.loss,
            'mask': unlabelled_loss.monitors['mask'],
            'tsa_threshold': threshold,
            'label_accuracy': algorithm.pseudo_label_accuracy(unlabelled_loss.labels, unlabelled[1]),
        }


if __name__ == '__main__':
    cli.main(UDA)
