#!/usr/bin/env python3
"""Fully supervised MixUp baseline: labelled images only, mixed pairwise with Beta(beta, beta) weights.

    python fully_supervised/fs_mixup.py --dataset=digits.1@50-250 --augment=svhn
    python fully_supervised/fs_mixup.py --dataset=mydataset-50 --custom_dataset \
        --train_record mydataset-train.tfrecord --test_record mydataset-test.tfrecord
"""

from libml import algorithm, cli, maths
from libml.config import hyper, positive

import tensorflow as tf

from fully_supervised.supervised import Supervised


class FSMixup(Supervised):
    """Cross-entropy on MixUp-ed labelled images and targets."""

    name = 'FSMixup'
    methods = (algorithm.Method('Supervised MixUp', 'fs_mixup', rank=1, settings={'beta': 0.5}, baseline=True),)
    settings = Supervised.settings + (hyper('beta', 0.5, 'MixUp Beta(beta, beta) parameter.', positive, '> 0'),)

    def loss(self, step, labelled, unlabelled):
        x, labels = labelled
        mixed_x, mixed_targets = maths.mixup(x, tf.one_hot(labels, self.nclass), self.hp.beta, step.seed)
        loss = maths.supervised_loss(mixed_targets, step.model(mixed_x, training=True))
        return loss, {'xe': loss}


if __name__ == '__main__':
    cli.main(FSMixup)
