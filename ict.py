#!/usr/bin/env python3
"""Interpolation Consistency Training (Verma et al. 2019): predictions of mixed images follow mixed predictions.

python ict.py --dataset=cifar10.1@250-5000
"""

from libml import algorithm, cli, maths
from libml.config import hyper, non_negative, positive, warmup_pos

import tensorflow as tf


class ICT(algorithm.Algorithm):
    """L = L_x + consistency_weight * ramp * mean (p(f(mix(u))) - mix(sg p(f_ema(u))))^2 (docs/algorithms.md#ict)."""

    name = 'ICT'
    methods = (algorithm.Method('ICT', 'ict', rank=40),)
    settings = (
        hyper(
            'consistency_weight',
            50.0,
            'Weight of the interpolation consistency loss after warm-up.',
            non_negative,
            '>= 0',
        ),
        hyper('beta', 0.5, 'Interpolation weights lam ~ Beta(beta, beta), lam = max(lam, 1 - lam).', positive, '> 0'),
        warmup_pos('the consistency weight'),
    )
    views = ('weak',)
    loss_names = ('xe', 'consistency')

    def loss(self, step, labelled, unlabelled):
        loss_xe = algorithm.labelled_loss(step, labelled, self.nclass)
        u = unlabelled[0][:, 0]
        teacher = tf.nn.softmax(step.ema_model(u, training=True, update_stats=False))
        mixed_u, mixed_teacher = maths.ict_mix(u, teacher, self.hp.beta, step.seed)
        consistency = maths.consistency_loss(tf.nn.softmax(algorithm.student(step, mixed_u)), mixed_teacher)
        weight = algorithm.ramped(step, self.hp.consistency_weight, self.hp.warmup_pos)
        return loss_xe + weight * consistency, {'xe': loss_xe, 'consistency': consistency, 'weight': weight}

    def pictures(self, step, labelled, unlabelled):
        """Adds the interpolated unlabelled batch, as `loss` mixes it (same seed, same weights)."""
        out = super().pictures(step, labelled, unlabelled)
        u = unlabelled[0][:, 0]
        out['mixed_unlabelled'], _ = maths.ict_mix(u, tf.zeros([u.shape[0], 1]), self.hp.beta, step.seed)
        return out


if __name__ == '__main__':
    cli.main(ICT)
