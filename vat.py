#!/usr/bin/env python3
"""Virtual Adversarial Training (Miyato et al. 2018) with entropy minimisation.

python vat.py --dataset=cifar10.1@250-5000
"""

from libml import algorithm, cli, maths
from libml.config import hyper, non_negative, positive, warmup_pos


class VAT(algorithm.Algorithm):
    """L = L_x + vat * ramp * KL(sg p(f(u_1)) || p(f(u_1 + r))) + entmin_weight * H(p(f(u_1))).

    docs/algorithms.md#vat
    """

    name = 'VAT'
    methods = (algorithm.Method('VAT', 'vat', rank=80),)
    settings = (
        hyper('vat', 0.3, 'Weight of the virtual adversarial loss after warm-up.', non_negative, '>= 0'),
        hyper(
            'vat_eps', 6.0, 'Radius (L2, in the [-1, 1] input scale) of the adversarial perturbation.', positive, '> 0'
        ),
        hyper('entmin_weight', 0.06, 'Weight of the entropy-minimisation loss.', non_negative, '>= 0'),
        warmup_pos('the VAT weight'),
    )
    views = ('weak',)
    loss_names = ('xe', 'vat', 'entmin')
    float32_only = (
        "VAT moves its inputs by 1e-6 to find the adversarial direction, below bfloat16's and "
        "float16's resolution (the direction would be noise): train VAT in float32"
    )

    def loss(self, step, labelled, unlabelled):
        loss_xe = algorithm.labelled_loss(step, labelled, self.nclass)
        u = unlabelled[0][:, 0]
        logits = algorithm.student(step, u)
        r = maths.vat_perturbation(lambda v: algorithm.student(step, v), u, logits, step.seed, eps=self.hp.vat_eps)
        loss_vat = maths.vat_loss(algorithm.student(step, u + r), logits)
        loss_ent = maths.entropy_from_logits(logits)
        weight = algorithm.ramped(step, self.hp.vat, self.hp.warmup_pos)
        loss = loss_xe + weight * loss_vat + self.hp.entmin_weight * loss_ent
        return loss, {'xe': loss_xe, 'vat': loss_vat, 'entmin': loss_ent, 'weight': weight}


if __name__ == '__main__':
    cli.main(VAT)
