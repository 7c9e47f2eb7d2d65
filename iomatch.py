#!/usr/bin/env python3
"""IOMatch (Li et al. 2023): every unlabelled image teaches a closed head and a (K+1)-way open head.

    python iomatch.py --dataset=cifar6_mismatch50.1@150-0      # the authors' CIFAR recipe: SGD, cosine, uratio 7

The model gains a one-vs-all head and a (K+1)-way open head behind a 128-wide projection
(docs/algorithms.md#iomatch). Confident inliers of the weak view teach the strong view's closed
head; the open targets q_c = p_c p_in_c, q_K = sum_c p_c p_out_c teach its open head.
Outlier score: the open head's probability of the extra class. --da_len=128 aligns p to uniform
classes with a queue of the last 128 batch means (off in the authors' CIFAR-10 configurations).
"""

from libml import algorithm, cli, maths, models, openset
from libml.config import hyper, non_negative, unit_interval

import tensorflow as tf


class IOMatch(algorithm.Algorithm):
    """L = L_x + L_ova + L_ui + w_open L_op (L_op from open_start_kimg on; the authors weigh each by 1)."""

    name = 'IOMatch'
    # The tables' schedules (tens of kimg): the open loss after 1 kimg, the authors' 1/256 of the run.
    methods = (algorithm.Method('IOMatch', 'iomatch', rank=110, recipe={'open_start_kimg': 1}),)
    settings = (
        hyper('p_cutoff', 0.95, 'Confidence of the closed-set pseudo-labels (max p).', unit_interval, 'in [0, 1)'),
        hyper('q_cutoff', 0.5, 'Confidence of the open-set targets (max q).', unit_interval, 'in [0, 1)'),
        hyper('w_open', 1.0, 'Weight of the open-set unlabelled loss L_op.', non_negative, '>= 0'),
        hyper(
            'open_start_kimg',
            64,
            'L_op is off for the first this many kimg (the authors: their first epoch, 1024 steps of 64).',
            non_negative,
            '>= 0',
        ),
        hyper(
            'da_len',
            0,
            'Distribution alignment of p to uniform classes with a queue of this many batch means; 0 = off '
            '(the authors: off on CIFAR-10, 128 on CIFAR-100).',
            non_negative,
            '>= 0',
        ),
    )
    loop_defaults = algorithm.FIXMATCH_LOOP
    views = ('weak', 'strong')
    loss_names = ('xe', 'ova', 'xeu', 'open')
    heads = models.Heads(ova=True, open=True, projection=128)
    outlier_score = 'open'

    def initial_state(self, unlabelled_count):
        """The alignment queue [da_len, K] of batch means of p and its next row, with --da_len > 0."""
        if not self.hp.da_len:
            return {}
        return dict(openset.iomatch_align_init(self.nclass, self.hp.da_len)._asdict())

    def loss(self, step, labelled, unlabelled):
        hp = self.hp
        labels = labelled[1]
        out = algorithm.forward_views(step, labelled, unlabelled, heads=True)  # [x, w, s] of each head
        loss_xe = maths.supervised_loss(tf.one_hot(labels, self.nclass), out['logits'][0])
        loss_ova = openset.ova_loss(out['ova'][0], labels)
        probs = tf.stop_gradient(tf.nn.softmax(out['logits'][1]))
        if hp.da_len:  # the queue takes this batch's mean (every replica's rows) before aligning it
            queue = openset.iomatch_align_update(openset.AlignQueue(**step.state), *algorithm.across_replicas(probs))
            algorithm.assign_state(step.state, queue._asdict())
            probs = openset.iomatch_align(probs, queue)
        u = openset.iomatch_loss(out['logits'][2], out['open'][2], probs, out['ova'][1], hp.p_cutoff, hp.q_cutoff)
        open_on = tf.cast(step.images_seen >= hp.open_start_kimg << 10, tf.float32)
        loss = loss_xe + loss_ova + u.closed + hp.w_open * open_on * u.open
        return loss, dict(
            u.monitors,
            xe=loss_xe,
            ova=loss_ova,
            xeu=u.closed,
            open=u.open,
            label_accuracy=algorithm.pseudo_label_accuracy(u.labels, unlabelled[1]),
        )


if __name__ == '__main__':
    cli.main(IOMatch)
