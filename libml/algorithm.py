"""What an algorithm is to the training loop: its settings, its data views and the loss of one step.

An algorithm file (realmix.py, fixmatch.py, ...) subclasses `Algorithm`, declares its
hyper-parameters (`settings`, with `config.hyper`) and any changed loop defaults, and writes
`loss`. The loop (libml/train/loop.py) owns everything else: data streams, optimiser, weight
decay, EMA, checkpoints, evaluation and reports.

It also names the methods it stands for (`methods`: MixMatch is realmix.py with two settings
changed), which register themselves when the file is imported: the benchmark, the demo and the
reproduction tables read that one registry (`registered`), so a new algorithm touches its own
file only. `algorithms.load()` (the repository root) imports every algorithm file.
"""

import dataclasses
from typing import NamedTuple

from libml import maths, models
from libml.data.dataset import DataSet
from libml.data.streams import DEFAULT_CACHE_MB
from libml.errors import UserError

import tensorflow as tf


class Step(NamedTuple):
    """What `Algorithm.loss` may use besides the batch (one replica of one step).

    model, ema_model: classifiers, called `model(x, training=True, update_stats=...)`;
    seed: stateless seed int64 [2], different for every step and replica; progress: share of
    training done r in [0, 1] (float32); images_seen: labelled images trained on before this step
    (int64 scalar); total_images: length of training in images (int); state: the algorithm's
    {name: tf.Variable} carried across steps (`Algorithm.initial_state`, `assign_state`), {} when it has none.
    """

    model: object
    ema_model: object
    seed: tf.Tensor
    progress: tf.Tensor
    images_seen: tf.Tensor
    total_images: int
    state: dict = {}


@dataclasses.dataclass(frozen=True)
class Method:
    """One named use of an algorithm: a row of the demo and the tables, an entry of the benchmark.

    label: its name in the tables and `reproduce.py --methods` ('MixMatch'); key: its name in
    `benchmark.py --algorithms` ('mixmatch'); rank: its place in every list (tables' rows, the
    benchmark), lowest first; settings: what makes the algorithm this method ({'tsa': 'none'}),
    also what the benchmark times; recipe: what the demo's and the tables' short schedules add
    ({'warmup_kimg': 32}); baseline: a supervised baseline (trained twice as long in the tables);
    algorithm: the `Algorithm` subclass, set when the method registers.
    """

    label: str
    key: str
    rank: int
    settings: dict = dataclasses.field(default_factory=dict)
    recipe: dict = dataclasses.field(default_factory=dict)
    baseline: bool = False
    algorithm: type | None = None

    def flags(self):
        """The command-line flags of the method in the tables: recipe then settings, '--name=value'."""
        return [f'--{name}={value}' for name, value in {**self.recipe, **self.settings}.items()]


_REGISTRY = {}  # label -> Method


def register(method):
    """Adds `method` (with its algorithm set) to the registry; a label another class has is a ValueError."""
    known = _REGISTRY.get(method.label)
    if known and known.algorithm.__qualname__ != method.algorithm.__qualname__:
        raise ValueError(
            f'method {method.label!r} is both {known.algorithm.__qualname__} and {method.algorithm.__qualname__}'
        )
    _REGISTRY[method.label] = method


def registered():
    """Every registered `Method`, by rank (then label)."""
    return sorted(_REGISTRY.values(), key=lambda m: (m.rank, m.label))


def method(label):
    """The registered `Method` called `label`; UserError naming the known ones otherwise."""
    if label not in _REGISTRY:
        known = ', '.join(m.label for m in registered()) or 'none (algorithms.load() imports them)'
        raise UserError(f'unknown method {label!r}: expected one of {known}')
    return _REGISTRY[label]


class Algorithm:
    """Base class. Subclasses set `name`, `settings`, `views` and write `loss`.

    views: the unlabelled views the step takes of each unlabelled image, by kind ('weak' = the
    dataset's --augment, 'strong' = --augment then RandAugment and Cutout); () = labelled data only.
    loss_names: step statistics written under `losses/` (the others go under `monitors/`); a statistic
    may be a vector of one value per class (written as `<tag>/<class name>`).
    float32_only: why the algorithm refuses --mixed_precision, or None when it computes in any precision.
    methods: the `Method`s this class stands for, registered when the class is defined (not inherited).
    heads: the heads its model gets besides the classifier's (`models.Heads`: one-vs-all, open);
    `step.model.outputs(x, ...)` returns them all.
    outlier_score: how the EMA model's outputs become the outlier score of an image (higher = more
    likely outside the labelled classes), a name of `openset.OUTLIER_SCORES`; the reports' outlier
    AUROC, `--perform_inference` and the SavedModel use it.
    """

    name = 'Algorithm'
    settings = ()
    loop_defaults = {}
    views = ()
    loss_names = ('xe',)
    float32_only = None
    methods = ()
    heads = models.Heads()
    outlier_score = 'max_softmax'

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for declared in cls.__dict__.get('methods', ()):
            register(dataclasses.replace(declared, algorithm=cls))

    def __init__(self, config, nclass):
        self.config = config
        self.hp = config.hp
        self.nclass = nclass

    @classmethod
    def check(cls, config):
        """UserError for settings that do not work together (called once the values are in range)."""

    @staticmethod
    def load_dataset(config):
        """The run's `DataSet`: the SSL split named by --dataset."""
        return DataSet.from_name(config.dataset, **dataset_options(config))

    def initial_state(self, unlabelled_count):
        """{name: initial value (tensor)} of what the algorithm carries from step to step; {} = none.

        unlabelled_count: M, images in the unlabelled stream (their `indices` are 0..M-1). The
        trainer holds each value in a checkpointed variable (`state_variables`), so a resumed run
        continues from the saved state; `loss` reads them from `step.state` and writes new values
        with `assign_state`.
        """
        return {}

    def refreshes(self, before, after):
        """Whether the loop calls `refresh` after the step that took training from image `before` to `after`.

        Default: never. The loop also asks (-1, 0) before the first step of a run.
        """
        return False

    def refresh(self, images, outputs, state):
        """{name: new value} of state refreshed from the EMA model's view of every training-unlabelled image.

        Called between steps when `refreshes` says so: images: training images done; outputs: the EMA
        model's `outputs` in evaluation mode on every training-unlabelled image, un-augmented, in
        index order ({'logits': [M, K], 'ova': [M, 2K], ...}); state: the state variables. The values
        are saved with the next checkpoint, so a resumed run continues with them.
        """
        return {}

    def loss(self, step, labelled, unlabelled):
        """(loss, {name: float32 scalar or [nclass] vector}) of one replica's batch, computed inside a GradientTape.

        labelled: (images [b, H, W, C] in [-1, 1], labels [b] int64); unlabelled: None when
        `views` is empty, else (images [u, len(views), H, W, C], labels [u] int64, -1 = unknown:
        for monitors only, indices [u] int64: each image's index in the unlabelled stream, the key
        of per-image state), u = uratio * b. b = --batch / replicas: read sizes from the shapes.
        """
        raise NotImplementedError

    def pictures(self, step, labelled, unlabelled):
        """{name: images [N, H, W, C] in [-1, 1]}: what TensorBoard shows of a training batch (eager).

        Same arguments as `loss` (the whole global batch). Default: 'labelled' and one entry per
        unlabelled view, 'unlabelled_<kind>' ('unlabelled_<kind>_<i>', i from 1, when a kind
        repeats). Algorithms that mix images add the mixed batch, drawn with the maths functions
        and `step.seed` that `loss` uses.
        """
        out = {'labelled': labelled[0]}
        if unlabelled is not None:
            for i, (kind, images) in enumerate(zip(self.views, tf.unstack(unlabelled[0], axis=1))):
                repeated = self.views.count(kind) > 1
                out[f'unlabelled_{kind}' + (f'_{self.views[:i].count(kind) + 1}' if repeated else '')] = images
        return out


def dataset_options(config):
    """Keyword arguments of `DataSet` constructors taken from the run's settings."""
    cache_mb = DEFAULT_CACHE_MB if config.cache_mb < 0 else config.cache_mb
    return dict(
        augment=config.augment,
        nclass=config.nclass,
        img_size=config.img_size,
        class_mapping=config.class_mapping,
        cache_mb=cache_mb,
        shuffle_buffer=config.shuffle_buffer,
    )


def forward_interleaved(model, batches):
    """Logits of equal-size `batches` [b, ...] with batch-norm statistics from mixed batches (MixMatch's pass).

    The batches are interleaved (every forward batch holds rows of each), run in training mode
    (only the first updates the moving statistics), and the logits de-interleaved: returns a list
    of [b, K] logits in the order of `batches`.
    """
    size = batches[0].shape[0]
    mixed = maths.interleave(batches, size)
    out = [model(mixed[0], training=True, update_stats=True)]
    out += [model(b, training=True, update_stats=False) for b in mixed[1:]]
    return maths.interleave(out, size)


def state_variables(initial):
    """{name: tf.Variable} holding `initial` {name: tensor}: not trained, one value on every replica.

    Create them inside the strategy's scope. Assigned in a replica's step (`assign_state`), the
    first replica's value is kept: every replica must compute the same one (`across_replicas`).
    """
    return {
        name: tf.Variable(value, trainable=False, name=name, aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        for name, value in initial.items()
    }


def assign_state(state, values):
    """Writes {name: new value} into the state variables `state` (every name of `state`)."""
    if set(values) != set(state):
        raise ValueError(f'new state {sorted(values)} does not match the state {sorted(state)}')
    for name, value in values.items():
        state[name].assign(tf.cast(value, state[name].dtype))


def across_replicas(*tensors):
    """Each tensor [n, ...] of this replica's batch -> [replicas * n, ...]: every replica's rows, in replica order.

    What a state update reads, so that every replica computes the same new state from the whole
    global batch. One replica: the tensors themselves.
    """
    context = tf.distribute.get_replica_context()
    replicas = 1 if context is None else context.num_replicas_in_sync
    if replicas == 1:
        return tensors
    gathered = context.all_gather(list(tensors), axis=0)  # static shapes are lost: set them again
    return tuple(tf.ensure_shape(g, [replicas * t.shape[0]] + t.shape[1:]) for g, t in zip(gathered, tensors))


# FixMatch's loop recipe (Sohn et al. 2020), its successors' too: SGD with Nesterov momentum, lr 0.03 decayed
# as cos(7 pi k / 16 K), L2 weight decay 5e-4 in the loss, 7 unlabelled images per labelled one.
FIXMATCH_LOOP = {'optimizer': 'sgd', 'lr': 0.03, 'lr_decay': 'cosine', 'wd': 0.0005, 'wd_mode': 'l2', 'uratio': 7}


def forward_views(step, labelled, unlabelled, heads=False):
    """One training-mode forward of [x; u_1; ...; u_V]: the labelled images and every unlabelled view.

    Batch-norm statistics of the whole concatenated batch, which also updates the moving statistics,
    as FixMatch's and its successors' code does (docs/algorithms.md#fixmatch). Unlabelled images
    [u, V, H, W, C]. Returns the logits of x [b, K] and of each view [u, K], in that order; with
    `heads`, {head name: [outputs of x, of view 1, ...]} (`model.outputs`).
    """
    x = labelled[0]
    views = tf.unstack(unlabelled[0], axis=1)
    forward = step.model.outputs if heads else step.model
    out = forward(tf.concat([x] + views, 0), training=True, update_stats=True)
    sizes = [x.shape[0]] + [views[0].shape[0]] * len(views)
    if heads:
        return {key: tf.split(value, sizes) for key, value in out.items()}
    return tf.split(out, sizes)


def weak_strong_logits(step, labelled, unlabelled):
    """(logits of x [b, K], of the weak views [u, K], of the strong views [u, K]): FixMatch's forward pass.

    `forward_views` of the ('weak', 'strong') views.
    """
    return tuple(forward_views(step, labelled, unlabelled))


def pseudo_label_accuracy(pseudo_labels, labels):
    """Share of right pseudo-labels [u] among the rows whose record has a label (`labels` [u] >= 0).

    float32 scalar, NaN when no record of the batch has a label.
    """
    known = labels >= 0
    count = tf.reduce_sum(tf.cast(known, tf.float32))
    right = tf.reduce_sum(tf.cast(tf.equal(pseudo_labels, labels) & known, tf.float32))
    return tf.where(count > 0, right / tf.maximum(count, 1.0), float('nan'))


def labelled_loss(step, labelled, nclass):
    """CE(onehot(l), f(x)) of the labelled batch, the step's first forward (it updates batch-norm statistics)."""
    x, labels = labelled
    return maths.supervised_loss(tf.one_hot(labels, nclass), step.model(x, training=True, update_stats=True))


def student(step, x):
    """f(x): the model in training mode, leaving the batch-norm moving statistics alone."""
    return step.model(x, training=True, update_stats=False)


def ramped(step, weight, warmup_pos):
    """`weight` ramped up linearly from 0 over the first `warmup_pos` of the run (maths.ramp): float32 scalar."""
    return weight * maths.ramp(step.images_seen, step.total_images, warmup_pos)


def require(condition, message):
    """UserError(message) unless `condition` (for `Algorithm.check`)."""
    if not condition:
        raise UserError(message)
