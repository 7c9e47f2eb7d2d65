#!/usr/bin/env python3
"""Pi-Model (Laine & Aila 2017): two augmented views of each unlabelled image should get the same prediction.

python pi_model.py --dataset=cifar10.1@250-5000
"""

from libml import algorithm, cli, maths
from libml.config import hyper, non_negative, warmup_pos

import tensorflow as tf


class PiModel(algorithm.Algorithm):
    """L = L_x + consistency_weight * ramp * mean (p(f(u_2)) - sg p(f(u_1)))^2 (docs/algorithms.md#pi-model)."""

    name = 'PiModel'
    methods = (algorithm.Method('Pi-Model', 'pi_model', rank=60),)
    settings = (
        hyper('consistency_weight', 10.0, 'Weight of the consistency loss after warm-up.', non_negative, '>= 0'),
        warmup_pos('the consistency weight'),
    )
    views = ('weak', 'weak')
    loss_names = ('xe', 'consistency')

    def teacher(self, step, u):
        """Probabilities the student is pulled towards (no gradient)."""
        return tf.stop_gradient(tf.nn.softmax(algorithm.student(step, u)))

    def loss(self, step, labelled, unlabelled):
        loss_xe = algorithm.labelled_loss(step, labelled, self.nclass)
        u_1, u_2 = tf.unstack(unlabelled[0], axis=1)
        target = self.teacher(step, u_1)
        consistency = maths.consistency_loss(tf.nn.softmax(algorithm.student(step, u_2)), target)
        weight = algorithm.ramped(step, self.hp.consistency_weight, self.hp.warmup_pos)
        return loss_xe + weight * consistency, {'xe': loss_xe, 'consistency': consistency, 'weight': weight}


if __name__ == '__main__':
    cli.main(PiModel)
