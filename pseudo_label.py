#!/usr/bin/env python3
"""Pseudo-Label (Lee 2013): confident predictions on unlabelled images become their training labels.

python pseudo_label.py --dataset=cifar10.1@250-5000
"""

from libml import algorithm, cli, maths
from libml.config import hyper, non_negative, unit_interval, warmup_pos

import tensorflow as tf


class PseudoLabel(algorithm.Algorithm):
    """L = L_x + consistency_weight * ramp * mean_i [max p_i > threshold] CE(argmax p_i, z_i).

    docs/algorithms.md#pseudo-label
    """

    name = 'PseudoLabel'
    methods = (algorithm.Method('Pseudo-Label', 'pseudo_label', rank=70),)
    settings = (
        hyper('consistency_weight', 1.0, 'Weight of the pseudo-label loss after warm-up.', non_negative, '>= 0'),
        hyper(
            'threshold', 0.95, 'Confidence above which a prediction becomes a pseudo-label.', unit_interval, 'in [0, 1)'
        ),
        warmup_pos('the pseudo-label weight'),
    )
    views = ('weak',)
    loss_names = ('xe', 'pseudo_label')

    def loss(self, step, labelled, unlabelled):
        loss_xe = algorithm.labelled_loss(step, labelled, self.nclass)
        loss_pl, mask = maths.pseudo_label_loss(algorithm.student(step, unlabelled[0][:, 0]), self.hp.threshold)
        weight = algorithm.ramped(step, self.hp.consistency_weight, self.hp.warmup_pos)
        return loss_xe + weight * loss_pl, {
            'xe': loss_xe,
            'pseudo_label': loss_pl,
            'mask': tf.reduce_mean(mask),
            'weight': weight,
        }


if __name__ == '__main__':
    cli.main(PseudoLabel)
