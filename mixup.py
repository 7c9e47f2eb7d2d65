#!/usr/bin/env python3
"""MixUp, semi-supervised (Zhang et al. 2018, as in the original release): labelled images mixed with their
labels, unlabelled images with the model's own predictions.

    python mixup.py --dataset=cifar10.1@250-5000
"""

from libml import algorithm, cli, maths
from libml.config import hyper, positive

import tensorflow as tf


class MixUp(algorithm.Algorithm):
    """L = CE(mixup(x, onehot(l))) + CE(mixup(u_1, sg p(f(u_1)))), each mixed within its own batch.

    docs/algorithms.md#mixup
    """

    name = 'MixUp'
    methods = (algorithm.Method('MixUp', 'mixup', rank=30),)
    settings = (hyper('beta', 0.5, 'MixUp weights lam ~ Beta(beta, beta), lam = max(lam, 1 - lam).', positive, '> 0'),)
    views = ('weak',)
    loss_names = ('xe', 'xeu')

    def loss(self, step, labelled, unlabelled):
        x, labels = labelled
        u = unlabelled[0][:, 0]
        seed_x, seed_u = tf.unstack(tf.random.experimental.stateless_split(step.seed, 2))
        mixed_x, targets_x = maths.mixup(x, tf.one_hot(labels, self.nclass), self.hp.beta, seed_x)
        loss_xe = maths.supervised_loss(targets_x, step.model(mixed_x, training=True, update_stats=True))
        guess = tf.stop_gradient(tf.nn.softmax(algorithm.student(step, u)))
        mixed_u, targets_u = maths.mixup(u, guess, self.hp.beta, seed_u)
        loss_xeu = maths.supervised_loss(targets_u, algorithm.student(step, mixed_u))
        return loss_xe + loss_xeu, {'xe': loss_xe, 'xeu': loss_xeu}

    def pictures(self, step, labelled, unlabelled):
        """Adds the mixed labelled and unlabelled batches, as `loss` mixes them (same seeds, same partners)."""
        out = super().pictures(step, labelled, unlabelled)
        seed_x, seed_u = tf.unstack(tf.random.experimental.stateless_split(step.seed, 2))
        pairs = (('mixed_labelled', labelled[0], seed_x), ('mixed_unlabelled', unlabelled[0][:, 0], seed_u))
        for name, images, seed in pairs:
            out[name], _ = maths.mixup(images, tf.zeros([images.shape[0], 1]), self.hp.beta, seed)  # targets unused
        return out


if __name__ == '__main__':
    cli.main(MixUp)
