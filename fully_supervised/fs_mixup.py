#!/usr/bin/env python3
"""Fully supervised MixUp baseline: labelled images only, mixed pairwise with Beta(beta, beta).

    python fully_supervised/fs_mixup.py --dataset=digits.1@50-250 --augment=svhn
    python fully_supervised/fs_mixup.py --dataset=mydataset-50 --custom_dataset \
        --train_record mydataset-train.tfrecord --test_record mydataset-test.tfrecord

Records labelled -1 (unlabelled) are never trained on. `--helpfull` lists the shared
training-loop, model and data flags too.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from libml.utils import quiet_tensorflow  # noqa: E402

quiet_tensorflow()

from absl import app, flags  # noqa: E402

from fully_supervised import supervised  # noqa: E402
from libml import layers, train  # noqa: E402
from libml.utils import cli_main  # noqa: E402

FLAGS = flags.FLAGS

flags.DEFINE_float('beta', 0.5, 'MixUp Beta(beta, beta) parameter.')


class FSMixup(train.Trainer):
    """Cross-entropy on MixUp-ed labelled images and targets."""

    name = 'FSMixup'
    hparam_flags = train.Trainer.hparam_flags + ('beta',)

    def train_step(self, labelled, unlabelled):
        x, targets = supervised.labelled_loss_inputs(self, labelled)
        mixed_x, mixed_targets = layers.mixup(x, targets, FLAGS.beta, self.step_seed())
        loss = layers.supervised_loss(mixed_targets, self.model(mixed_x, training=True))
        return loss, {'xe': loss}


if __name__ == '__main__':
    app.run(cli_main(supervised.main(FSMixup)))
