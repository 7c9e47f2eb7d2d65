#!/usr/bin/env python3
"""Fully supervised baseline: the same model and loop as RealMix, labelled images only.

On an SSL split (the fair comparison for a RealMix run on the same labels):
    python fully_supervised/fs_baseline.py --dataset=digits.1@50-250 --augment=svhn
On a whole training file, its first <valid> labelled records held out:
    python fully_supervised/fs_baseline.py --dataset=mydataset-50 --custom_dataset \
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

flags.DEFINE_float('smoothing', 0.001, 'Label smoothing: targets become (1 - s) one-hot + s / K.')


class FSBaseline(train.Trainer):
    """Cross-entropy on augmented labelled images, with label smoothing."""

    name = 'FSBaseline'
    hparam_flags = train.Trainer.hparam_flags + ('smoothing',)

    def train_step(self, labelled, unlabelled):
        x, targets = supervised.labelled_loss_inputs(self, labelled)
        targets = targets * (1.0 - FLAGS.smoothing) + FLAGS.smoothing / self.dataset.nclass
        loss = layers.supervised_loss(targets, self.model(x, training=True))
        return loss, {'xe': loss}


if __name__ == '__main__':
    app.run(cli_main(supervised.main(FSBaseline)))
