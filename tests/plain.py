"""The smallest algorithm the shared loop can run, and tiny trainers for in-process tests of the loop."""

from libml import algorithm, config, maths
from libml.train import loop, replicas

import tensorflow as tf

# Settings of a trainer that builds in a second: a tiny WRN, 16-image batches.
TINY = dict(filters=8, repeat=1, batch=16, augment='none', lr=0.01, wd=0.5, ema=0.9)


class Plain(algorithm.Algorithm):
    """Cross-entropy on labelled images."""

    name = 'Plain'

    def loss(self, step, labelled, unlabelled):
        x, y = labelled
        loss = maths.supervised_loss(tf.one_hot(y, self.nclass), step.model(x, training=True))
        return loss, {'xe': loss}


class Tally(Plain):
    """Plain's loss; its state counts how often each unlabelled image was drawn, from the whole global batch.

    Monitor `share`: the batch's share of unlabelled images of each class with a known label (a vector).
    """

    name = 'Tally'
    views = ('weak',)

    def initial_state(self, unlabelled_count):
        return {'drawn': tf.zeros([unlabelled_count], tf.int64)}

    def loss(self, step, labelled, unlabelled):
        loss, stats = super().loss(step, labelled, None)
        (indices,) = algorithm.across_replicas(unlabelled[2])
        drawn = tf.tensor_scatter_nd_add(step.state['drawn'], indices[:, None], tf.ones_like(indices))
        algorithm.assign_state(step.state, {'drawn': drawn})
        return loss, dict(stats, share=tf.reduce_mean(tf.one_hot(unlabelled[1], self.nclass), axis=0))


def make_trainer(algorithm=Plain, strategy=None, dataset='digits.1@50-250', **settings):
    """A `Trainer` of `algorithm` with the TINY settings (overridden by `settings`) on one device by default."""
    cfg = config.build(algorithm, **{**TINY, 'dataset': dataset, 'strategy': 'none', **settings})
    return loop.Trainer(cfg, algorithm, algorithm.load_dataset(cfg), strategy or replicas.get('none'))


def first_compiled_step(cls, **settings):
    """The first step of a tiny WRN trainer of `cls` (uratio 2) on digits: (weak-view probabilities float64
    [32, 10] as the step computes them, the batch's image indices [32], step stats, new state as numpy)."""
    trainer = make_trainer(cls, uratio=2, **settings)
    batches = [next(s) for s in trainer.train_streams(0)]
    _, logits, _ = algorithm.weak_strong_logits(trainer.step_context(), *batches)  # batch statistics: as the step
    stats = trainer.compiled_step()(*batches)
    state = {k: v.numpy() for k, v in trainer.state.items()}
    return tf.nn.softmax(tf.cast(logits, tf.float64)).numpy(), batches[1][2].numpy(), stats, state
