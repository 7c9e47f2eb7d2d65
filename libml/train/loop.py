"""The one training loop: the compiled step of any `Algorithm` and the schedule around it.

The step (one `tf.function`, traced once; jit-compiled with --xla) runs the algorithm's loss on
one batch per replica, averages gradients and statistics over the replicas, and applies, in
cross-replica context, the optimiser (Adam or SGD, constant or cosine learning rate), weight
decay (decoupled, or as an L2 term of the loss) and the EMA of the weights. The schedule runs
steps to each report and save point; evaluation and summaries (libml/report/reporter.py), resume and
the run dir (libml/train/run_folder.py) live elsewhere.

Scale-out (`--strategy`): `--batch` is the global batch; with R replicas each takes batch / R
labelled images and uratio times as many unlabelled ones. Per replica, as in any
data-parallel network: batch-norm batch statistics, MixUp pairs and masks. An algorithm's state
(`Algorithm.initial_state`) is one value on every replica, updated from the whole global batch
(`algorithm.across_replicas`). Only the chief writes checkpoints, summaries and reports.
"""

import math
import time

from libml import algorithm as algorithm_lib
from libml import maths, models, progress
from libml.errors import UserError
from libml.train import checkpoints, optimizers, precision, replicas

import numpy as np
import tensorflow as tf

_NOTICES = set()  # one-line notices already printed by this process


class NonFiniteLoss(UserError):
    """The loss became NaN or Inf near image `args[0]`."""


def check_setup(config, strategy, shape):
    """UserError when the settings cannot train on `strategy` and images of `shape` [H, W, C]."""
    count = strategy.num_replicas_in_sync
    if config.batch % count:
        raise UserError(
            f'--batch={config.batch} is the global batch: it must be a multiple of the '
            f'{count} replicas of --strategy={config.strategy}'
        )
    if config.xla and replicas.is_distributed(strategy):
        raise UserError(
            '--xla needs one device (--strategy=none): XLA cannot compile a step whose variables '
            f'are mirrored over {count} replicas'
        )
    side = min(shape[:2])
    if config.scales and 2 ** (config.scales - 1) > side:
        raise UserError(
            f'--scales={config.scales} halves the {side}-pixel images {config.scales - 1} times: use at '
            f'most {side.bit_length()} stages, or 0 for the default'
        )


class Trainer:
    """Model, EMA model, optimiser and step counter of one run, and the loop that trains them."""

    def __init__(self, config, algorithm, dataset, strategy=None):
        self.config, self.dataset = config, dataset
        self.strategy = strategy or replicas.get(config.strategy)
        self.replicas = self.strategy.num_replicas_in_sync
        self.chief = replicas.is_chief(self.strategy)
        check_setup(config, self.strategy, dataset.shape)
        self.compute_dtype, notice = precision.compute_dtype(config.mixed_precision)
        if notice and self.chief and notice not in _NOTICES:
            _NOTICES.add(notice)
            print(notice, flush=True)
        tf.random.set_seed(config.seed)
        np.random.seed(config.seed)
        self.algorithm = algorithm(config, dataset.nclass)
        self.heads = self.algorithm.heads
        with self.strategy.scope():
            self.model = self.create_model()
            self.ema_model = self.create_model()
            for ema_var, var in zip(self.ema_model.variables, self.model.variables):
                ema_var.assign(var)
            self.optimizer = optimizers.create(
                config.optimizer, self.model.trainable_variables, momentum=config.momentum
            )
            self.images_seen = tf.Variable(0, dtype=tf.int64, trainable=False, name='images_seen')
            self.loss_scale = precision.LossScale() if self.compute_dtype == 'float16' else None
            self.state = algorithm_lib.state_variables(self.algorithm.initial_state(dataset.unlabel_count))
        saved = dict(model=self.model, ema_model=self.ema_model, optimizer=self.optimizer, images_seen=self.images_seen)
        if self.state:  # only then: checkpoints of stateless algorithms keep their structure
            saved['algorithm_state'] = self.state
        self.checkpoint = tf.train.Checkpoint(**saved)
        self.seed = tf.constant(config.seed, tf.int64)
        self._ema_outputs = tf.function(lambda x: self.ema_model.outputs(x, training=False), reduce_retracing=True)

    def create_model(self, nclass=None):
        """A new classifier of the run's architecture and heads for `nclass` classes (default: the data's)."""
        c = self.config
        return models.create_model(
            c.arch,
            nclass or self.dataset.nclass,
            self.dataset.shape,
            filters=c.filters,
            repeat=c.repeat,
            scales=c.scales,
            bn_momentum=c.bn_momentum,
            compute_dtype=self.compute_dtype,
            heads=self.heads,
        )

    def sync_ema(self):
        """Gives the EMA model the raw model's batch-norm moving statistics (before use or saving)."""
        models.copy_moving_statistics(self.model, self.ema_model)

    def unlabelled_outputs(self):
        """The EMA model's `outputs` (evaluation mode) on every training-unlabelled image, plain, in index order."""
        parts = {}
        for x, _ in self.dataset.eval_unlabelled(self.config.eval_batch):
            for key, value in self._ema_outputs(x).items():
                parts.setdefault(key, []).append(value)
        return {key: tf.concat(values, 0) for key, values in parts.items()}

    def refresh(self, before, after):
        """The algorithm's `refresh` of its state, when due after a step from image `before` to `after`."""
        if not self.algorithm.refreshes(before, after):
            return
        self.sync_ema()
        for name, value in self.algorithm.refresh(after, self.unlabelled_outputs(), self.state).items():
            self.state[name].assign(tf.cast(value, self.state[name].dtype))

    def restore(self, path, what='model'):
        """Restores a training checkpoint and syncs the EMA statistics (checkpoints.restore's errors)."""
        checkpoints.restore(self.checkpoint, path, what)
        self.sync_ema()

    # ------------------------------------------------------------------ the step

    def progress(self):
        """Share of training done, r in [0, 1] (float32 tensor)."""
        return tf.minimum(tf.cast(self.images_seen, tf.float32) / float(self.config.total_images), 1.0)

    def _step_seed(self):
        """Stateless seed [2] of this step and replica: (seed, images_seen + replica id)."""
        replica = tf.distribute.get_replica_context().replica_id_in_sync_group
        return tf.stack([self.seed, self.images_seen + tf.cast(replica, tf.int64)])

    def step_context(self):
        """The `algorithm.Step` of the current step and replica."""
        return algorithm_lib.Step(
            self.model,
            self.ema_model,
            self._step_seed(),
            self.progress(),
            self.images_seen,
            self.config.total_images,
            self.state,
        )

    def _replica_step(self, labelled, unlabelled):
        """(gradients, stats) of this replica's batch, both averaged over the replicas."""
        size = self.config.batch // self.replicas  # multi-worker streams leave the batch size unknown
        labelled = _with_batch_size(labelled, size)
        if unlabelled is not None:
            unlabelled = _with_batch_size(unlabelled, size * self.config.uratio)
        step = self.step_context()
        with tf.GradientTape() as tape:
            loss, stats = self.algorithm.loss(step, labelled, unlabelled)
            if self.config.wd_mode == 'l2':
                loss += self.config.wd * maths.l2_penalty(self.model.kernels)
            scaled = self.loss_scale.scaled(loss) if self.loss_scale else loss
        grads = tape.gradient(scaled, self.model.trainable_variables)
        stats = dict(stats, overall=loss)
        if self.replicas > 1:
            grads, stats = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.MEAN, (grads, stats))
        return grads, stats

    def _step(self, labelled, unlabelled=None):
        """One training step on a global batch; returns {name: scalar} averaged over replicas."""
        results = self.strategy.run(self._replica_step, (labelled, unlabelled))
        grads, stats = tf.nest.map_structure(lambda v: self.strategy.experimental_local_results(v)[0], results)
        lr = maths.learning_rate(self.config.lr, self.config.lr_decay, self.progress())
        if self.loss_scale:
            grads, finite = self.loss_scale.unscale(grads)
            tf.cond(finite, lambda: self._apply(grads, lr), tf.no_op)
            self.loss_scale.update(finite)
        else:
            self._apply(grads, lr)
        self.images_seen.assign_add(self.config.batch)
        return dict(stats, lr=lr)

    def _apply(self, grads, lr):
        """Optimiser, decoupled weight decay, then EMA (cross-replica: the same update on every replica)."""
        variables = self.model.trainable_variables
        self.optimizer.apply(grads, variables, lr)
        if self.config.wd_mode == 'decoupled':
            maths.decay_weights(self.model.kernels, self.config.wd * lr)
        maths.ema_update(self.ema_model.trainable_variables, variables, self.config.ema)
        return tf.no_op()

    def input_signature(self):
        """TensorSpecs of the step's inputs on one device: (x, labels)[, (views, labels, indices)]."""
        shape, batch = tuple(self.dataset.shape), self.config.batch
        signature = [(tf.TensorSpec((batch,) + shape, tf.float32), tf.TensorSpec([batch], tf.int64))]
        views = self.algorithm.views
        if views:
            unlabelled = batch * self.config.uratio
            signature.append(
                (
                    tf.TensorSpec((unlabelled, len(views)) + shape, tf.float32),
                    tf.TensorSpec([unlabelled], tf.int64),
                    tf.TensorSpec([unlabelled], tf.int64),
                )
            )
        return signature

    def compiled_step(self, signature=None):
        """The step as one `tf.function` with fixed input shapes (traced once).

        `signature`: the `element_spec`s of the input streams (needed for distributed ones);
        default `input_signature()`.
        """
        return tf.function(
            self._step, input_signature=signature or self.input_signature(), jit_compile=self.config.xla or None
        )

    def train_streams(self, start):
        """Iterators over the (distributed) training batches, from image `start` on."""
        c = self.config
        datasets = [self.dataset.train_labelled(c.batch, c.seed, start)]
        if self.algorithm.views:
            datasets.append(
                self.dataset.train_unlabelled(c.batch * c.uratio, self.algorithm.views, c.seed, start * c.uratio)
            )
        return [iter(replicas.distribute_dataset(self.strategy, d)) for d in datasets]

    # ------------------------------------------------------------------ the schedule

    def train(self, start, reporter, save):
        """Trains from image `start` to the end of the schedule.

        After each report period: `save(images)` when a --save_kimg boundary was crossed (or at
        the end), then `reporter.report(images, stats, img_per_sec)` on the chief.
        """
        streams = self.train_streams(start)
        step = self.compiled_step([s.element_spec for s in streams])
        images = start
        with self.dataset.pipeline_errors():  # a defective record met by a stream: one line naming its file
            if not start:
                self.refresh(-1, 0)
            while images < self.config.total_images:
                images = self._period(step, streams, images, reporter, save)

    def _period(self, step, streams, images, reporter, save):
        """One report period from `images`: steps, then save and report; returns the images reached."""
        c = self.config
        period, every = c.report_kimg << 10, c.save_kimg << 10
        target = min((images // period + 1) * period, c.total_images)
        stats, rate, reached = self._train_period(step, streams, images, target)
        self.sync_ema()
        if reached // every > images // every or reached >= c.total_images:
            save(reached)
        if self.chief:
            reporter.report(reached, stats, rate)
        return reached

    def _train_period(self, step, streams, images, target):
        """Runs steps until `target` images; returns (mean stats, img/s, images reached)."""
        sums, count, done = {}, 0, images
        bar = progress.bar(
            total=math.ceil((target - images) / 1024),
            unit='kimg',
            disable=not self.chief,
            desc=f'kimg {images >> 10}-{target >> 10}',
        )
        began = time.time()
        while done < target:
            stats = step(*[next(s) for s in streams])
            count += 1
            for key, value in stats.items():
                sums[key] = sums.get(key, 0.0) + value
            done += self.config.batch
            self.refresh(done - self.config.batch, done)
            if count % 16 == 0 or done >= target:
                means = _means(sums, count)
                if not math.isfinite(means['overall']):
                    bar.close()
                    raise NonFiniteLoss(done)
                bar.update(math.ceil((done - images) / 1024) - bar.n)
                bar.set_postfix({k: f'{v:.4f}' for k, v in means.items() if np.ndim(v) == 0})
        bar.close()
        rate = (done - images) / max(time.time() - began, 1e-9)
        return _means(sums, count), rate, done


def _means(sums, count):
    """{name: sum over `count` steps} -> {name: mean}: a float, or a float64 array for a vector statistic."""
    return {k: float(v) / count if np.ndim(v) == 0 else np.asarray(v, np.float64) / count for k, v in sums.items()}


def _with_batch_size(batch, size):
    """The tensors of `batch` ((images, labels[, indices])) with their first dimension set to `size`."""
    return tuple(tf.ensure_shape(t, [size] + t.shape[1:]) for t in batch)
