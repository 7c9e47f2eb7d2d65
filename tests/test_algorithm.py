"""What an algorithm is to the loop: its default pictures (libml/algorithm.py)."""

from libml import config

import numpy as np
import tensorflow as tf
from test_report_reporter import Views


def test_default_pictures_are_the_labelled_batch_and_every_view():
    algo = Views(config.build(Views), 10)
    x = tf.random.uniform([4, 8, 8, 1], -1, 1)
    u = tf.random.uniform([8, 3, 8, 8, 1], -1, 1)
    shown = algo.pictures(None, (x, tf.zeros([4], tf.int64)), (u, -tf.ones([8], tf.int64)))
    assert list(shown) == ['labelled', 'unlabelled_weak_1', 'unlabelled_weak_2', 'unlabelled_strong']
    np.testing.assert_array_equal(shown['labelled'], x)
    for i, name in enumerate(list(shown)[1:]):
        np.testing.assert_array_equal(shown[name], u[:, i])
