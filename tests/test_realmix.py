"""Each algorithm's loss on a fixed tiny batch against a numpy computation of docs/algorithms.md, and a tiny
run of each.

The model is a real linear classifier (no batch norm, so interleaving and `update_stats` do not
change its outputs); random draws (VAT's d, MixUp's and ICT's lam and permutation) are inputs the
test draws with the same stateless primitives and seed, then the formula is computed in numpy.
"""

from libml import config, maths

import numpy as np
import pytest
import tensorflow as tf
from linear_step import SEED, B, K, run_loss, setup, softmax, xent
from test_report_reporter import partner_weights

import realmix


def test_mixmatch_step_of_realmix():
    model, _, x, labels, u, u_labels, step = setup()
    loss, stats = run_loss(
        realmix.RealMix,
        step,
        x,
        labels,
        u,
        u_labels,
        tsa='none',
        percent_mask=-1.0,
        w_match=75.0,
        warmup_kimg=4,
        temperature=0.5,
    )
    p = (softmax(model.numpy(u[:, 0])) + softmax(model.numpy(u[:, 1]))) / 2
    guess = p**2 / (p**2).sum(1, keepdims=True)
    rows = np.concatenate([x, u[:, 0], u[:, 1]]).reshape(3 * B, -1)
    targets = np.concatenate([np.eye(K)[labels], guess, guess])
    seeds = tf.random.experimental.stateless_split(SEED, 2)
    perm = np.argsort(tf.random.stateless_uniform([3 * B], seeds[0]).numpy(), kind='stable')
    lam = maths.beta_lambda(seeds[1], 3 * B, 0.75).numpy()[:, None]
    mixed, mixed_t = lam * rows + (1 - lam) * rows[perm], lam * targets + (1 - lam) * targets[perm]
    logits = model.numpy(mixed)
    xe = xent(mixed_t[:B], logits[:B]).mean()
    l2u = ((mixed_t[B:] - softmax(logits[B:])) ** 2).mean()
    w = 75.0 * min(1000 / (4 * 1024), 1.0)
    assert stats['xe'] == pytest.approx(xe, rel=1e-5)
    assert stats['l2u'] == pytest.approx(l2u, rel=1e-5)
    assert loss == pytest.approx(xe + w * l2u, rel=1e-5)


def test_realmix_pictures_mix_the_labelled_and_unlabelled_batch_in_pairs():
    from realmix import RealMix

    algo = RealMix(config.build(RealMix), 10)
    rng = np.random.RandomState(0)
    x = rng.uniform(-1, 1, (4, 6, 6, 1)).astype(np.float32)
    u = rng.uniform(-1, 1, (4, 2, 6, 6, 1)).astype(np.float32)
    step = type('Step', (), {'seed': tf.constant([3, 7], tf.int64)})
    shown = algo.pictures(step, (tf.constant(x), tf.zeros([4], tf.int64)), (tf.constant(u), -tf.ones([4], tf.int64)))
    assert list(shown) == ['labelled', 'unlabelled_weak_1', 'unlabelled_weak_2', 'mixed_labelled', 'mixed_unlabelled']
    stacked = np.concatenate([x, u[:, 0], u[:, 1]])
    mixed = np.concatenate([shown['mixed_labelled'], shown['mixed_unlabelled']])
    assert shown['mixed_labelled'].shape == x.shape and mixed.shape == stacked.shape
    pairs = partner_weights(mixed, stacked)
    assert all(0.5 - 1e-5 <= lam <= 1 + 1e-5 for _, lam in pairs)  # MixUp keeps the row's own image dominant
    assert sorted(j for j, _ in pairs) == list(range(12))  # partners are a permutation of the stacked batch
