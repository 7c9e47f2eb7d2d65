#!/usr/bin/env python3
"""OpenMatch (Saito et al. 2021): one-vs-all heads pick the inliers FixMatch then learns from.

    python openmatch.py --dataset=cifar6_mismatch50.1@150-0      # the authors' recipe: SGD, cosine, uratio 2

Every unlabelled image, in two weak views, trains the one-vs-all head (entropy L_em, soft open-set
consistency L_socr); every --select_kimg from --start_fix_kimg on, the EMA model picks the inliers
(p_in of the predicted class above 0.5) among all training-unlabelled images, and the FixMatch term
learns from the inliers of each batch (docs/algorithms.md#openmatch). Outlier score: p_out of the
predicted class. The labelled images come in one view (the authors' newer code uses two).
"""

from libml import algorithm, cli, maths, models, openset
from libml.config import hyper, non_negative, positive, unit_interval

import tensorflow as tf


class OpenMatch(algorithm.Algorithm):
    """L = L_x + L_ova + w_em L_em + w_socr L_socr + L_fix (on the selected inliers, from start_fix_kimg)."""

    name = 'OpenMatch'
    # The tables' schedules (tens of kimg): first selection after 8 kimg, then one every 4 (one report).
    methods = (algorithm.Method('OpenMatch', 'openmatch', rank=100, recipe={'start_fix_kimg': 8, 'select_kimg': 4}),)
    settings = (
        hyper('w_em', 0.1, 'Weight of the one-vs-all entropy L_em.', non_negative, '>= 0'),
        hyper('w_socr', 0.5, 'Weight of the soft open-set consistency L_socr.', non_negative, '>= 0'),
        hyper('confidence', 0.0, 'Confidence threshold of the FixMatch pseudo-labels.', unit_interval, 'in [0, 1)'),
        hyper(
            'start_fix_kimg',
            640,
            'First inlier selection and start of the FixMatch term (the authors: 10 epochs of 1024 steps of 64).',
            non_negative,
            '>= 0',
        ),
        hyper('select_kimg', 64, 'Inliers re-selected every this many kimg (authors: every epoch).', positive, '>= 1'),
    )
    loop_defaults = dict(algorithm.FIXMATCH_LOOP, uratio=2)
    views = ('weak', 'weak', 'strong')
    loss_names = ('xe', 'ova', 'em', 'socr', 'xeu')
    heads = models.Heads(ova=True)
    outlier_score = 'ova'

    def initial_state(self, unlabelled_count):
        """inliers: float32 [M], 1 = the image is selected for the FixMatch term (all before the first selection)."""
        return {'inliers': tf.ones([unlabelled_count])}

    def refreshes(self, before, after):
        """Selections at start_fix_kimg, then every select_kimg: is the last one up to `after` past `before`?"""
        start, every = self.hp.start_fix_kimg << 10, self.hp.select_kimg << 10
        return after >= start and start + (after - start) // every * every > before

    def refresh(self, images, outputs, state):
        everyone = tf.range(tf.shape(state['inliers'], out_type=tf.int64)[0])
        inliers = openset.openmatch_update_inliers(state['inliers'], everyone, outputs['logits'], outputs['ova'])
        return {'inliers': inliers}

    def loss(self, step, labelled, unlabelled):
        hp = self.hp
        labels, (_, u_labels, indices) = labelled[1], unlabelled
        out = algorithm.forward_views(step, labelled, unlabelled, heads=True)
        logits, ova = out['logits'], out['ova']  # [x, w1, w2, s] each
        loss_xe = maths.supervised_loss(tf.one_hot(labels, self.nclass), logits[0])
        opened = openset.openmatch_open_losses(ova[0], labels, ova[1], ova[2], hp.w_em, hp.w_socr)
        fix_on = tf.cast(step.images_seen >= hp.start_fix_kimg << 10, tf.float32)
        selected = fix_on * tf.gather(step.state['inliers'], indices)
        loss_xeu, mask, pseudo = openset.selected_fixmatch_loss(logits[1], logits[3], selected, hp.confidence)
        return loss_xe + opened.loss + loss_xeu, {
            'xe': loss_xe,
            'ova': opened.ova,
            'em': opened.em,
            'socr': opened.socr,
            'xeu': loss_xeu,
            'inliers': tf.reduce_mean(step.state['inliers']),
            'mask': tf.reduce_mean(mask),
            'label_accuracy': algorithm.pseudo_label_accuracy(pseudo, tf.where(selected > 0, u_labels, -1)),
        }


if __name__ == '__main__':
    cli.main(OpenMatch)
