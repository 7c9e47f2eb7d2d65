#!/usr/bin/env python3
"""RealMix: MixMatch's label guessing and MixUp, with training signal annealing and out-of-distribution masking.

Train:      python realmix.py --dataset=cifar10_aug50.1@250-500 --augment=cifar10 --tsa=linear_schedule
MixMatch:   python realmix.py --dataset=cifar10.1@250-500 --tsa=none --percent_mask=-1
Evaluate:   python realmix.py --dataset=... --eval_ckpt=RUN_DIR/tf/model.ckpt-0000065536
Inference:  python realmix.py --dataset=... --perform_inference --inference_dir=DIR --inference_ckpt=CKPT

Runs are written to <train_dir>/<dataset>/RealMix_<settings>/ and resume automatically.
"""

from libml import algorithm, cli, maths
from libml.config import hyper, non_negative, positive

import tensorflow as tf

# What the demo and the tables (tens of kimg) add: the unlabelled weight ramps up over 32 kimg, not 1024.
RECIPE = {'warmup_kimg': 32, 'w_match': 75, 'beta': 0.75}


def _percent(p):
    return p == -1 or 0 <= p < 1


class RealMix(algorithm.Algorithm):
    """MixMatch-style label guessing + MixUp, with TSA and percent masking of unlabelled rows.

    docs/algorithms.md#realmix
    """

    name = 'RealMix'
    methods = (
        algorithm.Method('MixMatch', 'mixmatch', rank=10, settings={'tsa': 'none', 'percent_mask': -1}, recipe=RECIPE),
        algorithm.Method(
            'RealMix', 'realmix', rank=11, settings={'tsa': 'linear_schedule', 'percent_mask': 0.25}, recipe=RECIPE
        ),
    )
    settings = (
        hyper('w_match', 75.0, 'Weight of the unlabelled (L2) loss after warm-up.', non_negative, '>= 0'),
        hyper(
            'warmup_kimg',
            1024,
            'The unlabelled loss weight ramps up linearly over this many kimg.',
            non_negative,
            '>= 0',
        ),
        hyper('beta', 0.75, 'MixUp Beta(beta, beta) parameter.', positive, '> 0'),
        hyper('nu', 2, 'Augmented views of each unlabelled image used to guess its label.', positive, '>= 1'),
        hyper('temperature', 0.5, 'Sharpening temperature of the guessed labels.', positive, '> 0'),
        hyper(
            'tsa',
            'linear_schedule',
            'Training signal annealing: labelled examples the model already predicts '
            'above a rising threshold are left out of the supervised loss.',
            choices=maths.TSA_SCHEDULES,
        ),
        hyper(
            'percent_mask',
            0.25,
            'Out-of-distribution masking: share of the least confident unlabelled rows of '
            'each batch left out of the unlabelled loss; -1 = off.',
            _percent,
            '-1 (off) or in [0, 1)',
        ),
    )
    loss_names = ('xe', 'l2u', 'high_prob_ratio')
    outlier_score = 'percent_mask'  # 1 - max softmax: the quantity whose lowest rows the mask drops

    def __init__(self, config, nclass):
        super().__init__(config, nclass)
        self.views = ('weak',) * self.hp.nu

    def loss(self, step, labelled, unlabelled):
        hp = self.hp
        x, labels = labelled
        batch = x.shape[0]
        views = tf.unstack(unlabelled[0], axis=1)
        guess = maths.guess_label([step.model(u, training=True, update_stats=False) for u in views], hp.temperature)
        stacked = tf.concat([x] + views, 0)
        targets = tf.concat([tf.one_hot(labels, self.nclass)] + [guess] * len(views), 0)
        mixed, mixed_targets = maths.mixup(stacked, targets, hp.beta, step.seed)
        logits = algorithm.forward_interleaved(step.model, tf.split(mixed, stacked.shape[0] // batch))
        logits_x, logits_u = logits[0], tf.concat(logits[1:], 0)
        targets_x, targets_u = mixed_targets[:batch], mixed_targets[batch:]

        threshold = maths.tsa_threshold(hp.tsa, step.progress, self.nclass)
        mask_x = None if hp.tsa == 'none' else maths.tsa_mask(targets_x, tf.nn.softmax(logits_x), threshold)
        loss_xe = maths.supervised_loss(targets_x, logits_x, mask_x)
        mask_u = maths.percent_mask(tf.stop_gradient(tf.nn.softmax(logits_u)), hp.percent_mask)
        loss_l2u = maths.unsupervised_loss(targets_u, logits_u, mask_u)
        w_match = maths.warmup_weight(hp.w_match, tf.cast(step.images_seen, tf.float32), hp.warmup_kimg)
        return loss_xe + w_match * loss_l2u, {
            'xe': loss_xe,
            'l2u': loss_l2u,
            'high_prob_ratio': tf.reduce_mean(mask_u),
            'wmatch': w_match,
            'tsa_threshold': tf.cast(threshold, tf.float32),
        }

    def pictures(self, step, labelled, unlabelled):
        """Adds the MixUp output of the stacked [x; u_1; ...; u_nu], as `loss` mixes it (same seed, same partners)."""
        out = super().pictures(step, labelled, unlabelled)
        x = labelled[0]
        stacked = tf.concat([x] + tf.unstack(unlabelled[0], axis=1), 0)
        mixed, _ = maths.mixup(stacked, tf.zeros([stacked.shape[0], 1]), self.hp.beta, step.seed)  # targets unused
        out['mixed_labelled'], out['mixed_unlabelled'] = mixed[: x.shape[0]], mixed[x.shape[0] :]
        return out


if __name__ == '__main__':
    cli.main(RealMix)
