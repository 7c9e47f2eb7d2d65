"""Replicas of the training loop: tf.distribute strategies, the chief worker, per-worker saving.

`--strategy`:
  none         the default strategy: one device (the first GPU if any, else the CPU).
  mirrored     `MirroredStrategy` over every visible GPU (without GPUs: over the logical CPU
               devices, one unless the process configured more, as the tests do).
  multiworker  `MultiWorkerMirroredStrategy`, the cluster read from $TF_CONFIG.
  auto         mirrored when more than one GPU is visible, else none.
`MultiWorkerMirroredStrategy` must exist before TensorFlow runs its first op, so the entry
points create the strategy (`get`) before they read any data.
"""

import json
import os
import shutil
import tempfile

from libml.errors import UserError

import tensorflow as tf

STRATEGIES = ('auto', 'none', 'mirrored', 'multiworker')
_CACHE = {}


def get(name):
    """The strategy for `--strategy=name`, created once per process."""
    if name not in STRATEGIES:
        raise UserError(f'--strategy={name}: expected one of {", ".join(STRATEGIES)}')
    if name == 'auto':
        name = 'mirrored' if len(tf.config.list_physical_devices('GPU')) > 1 else 'none'
    if name not in _CACHE:
        _CACHE[name] = _create(name)
    return _CACHE[name]


def _create(name):
    if name == 'none':
        return tf.distribute.get_strategy()
    tf.get_logger().setLevel('WARNING')  # tf.distribute logs every all-reduce it builds at INFO
    if name == 'mirrored':
        devices = [d.name for d in tf.config.list_logical_devices('GPU')]
        return tf.distribute.MirroredStrategy(devices or [d.name for d in tf.config.list_logical_devices('CPU')])
    _check_tf_config()
    return tf.distribute.MultiWorkerMirroredStrategy()


def _check_tf_config():
    """UserError unless $TF_CONFIG names a cluster and this process's task in it."""
    text = os.environ.get('TF_CONFIG', '')
    if not text:
        raise UserError(
            '--strategy=multiworker needs $TF_CONFIG, e.g. {"cluster": {"worker": ["host1:port", '
            '"host2:port"]}, "task": {"type": "worker", "index": 0}}'
        )
    try:
        config = json.loads(text)
        task = config['task']
        members = config['cluster'][task['type']]
        if not 0 <= int(task['index']) < len(members):
            raise IndexError(task['index'])
    except (ValueError, KeyError, IndexError, TypeError) as e:
        raise UserError(
            f'$TF_CONFIG is not a valid cluster description ({type(e).__name__}: {e}): it needs '
            '"cluster" (task type -> list of host:port) and "task" ({"type", "index"}) in it'
        ) from None


def is_distributed(strategy):
    """Whether `strategy` mirrors variables over replicas (else it is the default, one-device one)."""
    return isinstance(strategy, (tf.distribute.MirroredStrategy, tf.distribute.MultiWorkerMirroredStrategy))


def worker_count(strategy):
    """Number of worker processes taking part in `strategy` (1 for a single machine)."""
    resolver = strategy.cluster_resolver
    if resolver is None:
        return 1
    return sum(len(v) for k, v in resolver.cluster_spec().as_dict().items() if k in ('chief', 'worker'))


def is_chief(strategy):
    """Whether this process writes checkpoints, summaries and reports: the task 'chief', or
    worker 0 of a cluster without one, or any single-process run."""
    resolver = strategy.cluster_resolver
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    cluster = resolver.cluster_spec().as_dict()
    if resolver.task_type == 'chief':
        return True
    return resolver.task_type == 'worker' and resolver.task_id == 0 and 'chief' not in cluster


def distribute_dataset(strategy, dataset):
    """`dataset` (global batches) split into per-replica batches, prefetched to the replicas.

    One device: `dataset` itself. Multi-worker runs shard by data: each worker computes the
    stream and keeps its part.
    """
    if not is_distributed(strategy):
        return dataset
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return strategy.experimental_distribute_dataset(dataset.with_options(options))


def common_start(strategy, images_seen, train_dir):
    """images_seen after resuming (int); UserError when the workers of a cluster disagree."""
    start = int(images_seen.numpy())
    if worker_count(strategy) > 1:

        def moments():
            seen = tf.cast(tf.identity(images_seen), tf.float64)
            return tf.stack([seen, seen * seen])

        per_replica = tf.function(lambda: strategy.run(moments))()
        mean, mean_square = strategy.reduce('MEAN', per_replica, axis=None).numpy()
        if mean_square != mean * mean:  # the variance over the replicas is 0 iff they all agree
            raise UserError(
                f'the workers resumed from different checkpoints (this one from {start} images): '
                f'--train_dir={train_dir} must be one shared folder that every worker reads'
            )
    return start


def save_dir(strategy, directory):
    """Where this worker writes a checkpoint: `directory` on the chief, else a new temp folder.

    Every worker of a multi-worker run must take part in saving; only the chief's copy is kept
    (remove the others with `discard`).
    """
    return directory if is_chief(strategy) else tempfile.mkdtemp(prefix='worker_ckpt_')


def discard(strategy, directory):
    """Removes a non-chief worker's temp checkpoint folder (no-op on the chief)."""
    if not is_chief(strategy):
        shutil.rmtree(directory, ignore_errors=True)
