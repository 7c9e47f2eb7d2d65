#!/usr/bin/env python3
"""Fully supervised baseline: the same model and loop as RealMix, labelled images only.

On an SSL split (the fair comparison for a RealMix run on the same labels):
    python fully_supervised/fs_baseline.py --dataset=digits.1@50-250 --augment=svhn
On a whole training file, <valid> labelled records (balanced over the classes) held out:
    python fully_supervised/fs_baseline.py --dataset=mydataset-50 --custom_dataset \
        --train_record mydataset-train.tfrecord --test_record mydataset-test.tfrecord
"""

from libml import algorithm, cli, maths
from libml.config import hyper, unit_interval

import tensorflow as tf

from fully_supervised.supervised import Supervised


class FSBaseline(Supervised):
    """Cross-entropy on augmented labelled images, with label smoothing."""

    name = 'FSBaseline'
    methods = (algorithm.Method('Supervised', 'fs_baseline', rank=0, settings={'smoothing': 0.001}, baseline=True),)
    settings = Supervised.settings + (
        hyper(
            'smoothing', 0.001, 'Label smoothing: targets become (1 - s) one-hot + s / K.', unit_interval, 'in [0, 1)'
        ),
    )

    def loss(self, step, labelled, unlabelled):
        x, labels = labelled
        targets = tf.one_hot(labels, self.nclass) * (1.0 - self.hp.smoothing) + self.hp.smoothing / self.nclass
        loss = maths.supervised_loss(targets, step.model(x, training=True))
        return loss, {'xe': loss}


if __name__ == '__main__':
    cli.main(FSBaseline)
