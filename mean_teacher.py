#!/usr/bin/env python3
"""Mean Teacher (Tarvainen & Valpola 2017): the student follows the EMA model's prediction of another view.

python mean_teacher.py --dataset=cifar10.1@250-5000
"""

from libml import algorithm, cli
from libml.config import with_defaults

import tensorflow as tf

from pi_model import PiModel


class MeanTeacher(PiModel):
    """As Pi-Model with the teacher sg p(f_ema(u_1)) (batch statistics) and consistency weight 50.

    docs/algorithms.md#mean-teacher
    """

    name = 'MeanTeacher'
    methods = (algorithm.Method('Mean Teacher', 'mean_teacher', rank=50),)
    settings = with_defaults(PiModel.settings, consistency_weight=50.0)

    def teacher(self, step, u):
        return tf.stop_gradient(tf.nn.softmax(step.ema_model(u, training=True, update_stats=False)))


if __name__ == '__main__':
    cli.main(MeanTeacher)
