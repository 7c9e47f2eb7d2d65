"""Classifiers as plain `tf.Module`s: Wide-ResNet (default), a plain ConvNet, Shake-Shake.

Variables are created at construction, so `tf.train.Checkpoint(model=...)` tracks them
before the first call. Every model maps images [B, H, W, C] (float, scaled to [-1, 1]) to
float32 logits [B, K] with `model(x, training=False, update_stats=True)`.

Open-set algorithms add heads on the pooled features (`Heads`: one-vs-all, (K+1)-way open,
an MLP projection in front of them); `model.outputs(x, ...)` returns every head's output in
one forward pass, `model(x, ...)` the logits alone, as for any other model.

Mixed precision: with `compute_dtype='float16'` (or 'bfloat16') each layer casts its input
and its kernel to that type; variables stay float32, batch-norm statistics are computed in
float32 and the logits are returned as float32.

Batch-norm moving statistics are non-trainable variables with `VariableAggregation.MEAN`
(default synchronization, i.e. mirrored under `tf.distribute`): an assignment made inside
`strategy.run` is averaged over the replicas, so every replica and every checkpoint holds
the same statistics.
"""

import dataclasses
import math

from libml.errors import UserError

import tensorflow as tf

ARCHS = ('resnet', 'convnet', 'shake')
LEAKY_SLOPE = 0.1


def _leaky_relu(x):
    return tf.nn.leaky_relu(x, alpha=LEAKY_SLOPE)


class Conv2D(tf.Module):
    """k x k convolution, 'SAME' padding; He-normal kernel (stddev sqrt(2 / (k k filters)))."""

    def __init__(self, filters_in, filters, kernel_size, stride=1, use_bias=True, compute_dtype='float32', name=None):
        super().__init__(name=name)
        stddev = math.sqrt(2.0 / (kernel_size * kernel_size * filters))
        self.kernel = tf.Variable(
            tf.random.normal([kernel_size, kernel_size, filters_in, filters], stddev=stddev), name='kernel'
        )
        self.bias = tf.Variable(tf.zeros([filters]), name='bias') if use_bias else None
        self.stride = stride
        self.compute_dtype = tf.as_dtype(compute_dtype)

    def __call__(self, x):
        """x: [B, H, W, filters_in] -> [B, ceil(H / stride), ceil(W / stride), filters]."""
        y = tf.nn.conv2d(tf.cast(x, self.compute_dtype), tf.cast(self.kernel, self.compute_dtype), self.stride, 'SAME')
        if self.bias is not None:
            y = tf.nn.bias_add(y, tf.cast(self.bias, self.compute_dtype))
        return y


class Dense(tf.Module):
    """Fully connected layer: Glorot-normal (truncated) kernel, zero bias (or none); float32 output."""

    def __init__(self, units_in, units, compute_dtype='float32', use_bias=True, name=None):
        super().__init__(name=name)
        # 0.8796 is the standard deviation of a unit normal truncated at +-2.
        stddev = math.sqrt(2.0 / (units_in + units)) / 0.87962566103423978
        self.kernel = tf.Variable(tf.random.truncated_normal([units_in, units], stddev=stddev), name='kernel')
        self.bias = tf.Variable(tf.zeros([units]), name='bias') if use_bias else None
        self.compute_dtype = tf.as_dtype(compute_dtype)

    def __call__(self, x):
        """x: [B, units_in] -> [B, units] float32."""
        y = tf.cast(tf.matmul(tf.cast(x, self.compute_dtype), tf.cast(self.kernel, self.compute_dtype)), tf.float32)
        return y if self.bias is None else y + self.bias


class BatchNorm(tf.Module):
    """Batch normalisation over all axes but the last, with moving averages for evaluation.

    One fused kernel (`FusedBatchNormV3`, NHWC) in both modes, with its fused gradient.
    moving <- momentum * moving + (1 - momentum) * batch moment, where the batch variance is
    the biased (1/n) one. Scale, offset and statistics are float32 whatever the input type
    (float32, float16 or bfloat16); the output has the input's type.
    """

    def __init__(self, channels, momentum=0.999, epsilon=1e-3, name=None):
        super().__init__(name=name)
        self.gamma = tf.Variable(tf.ones([channels]), name='gamma')
        self.beta = tf.Variable(tf.zeros([channels]), name='beta')
        stat = {'trainable': False, 'aggregation': tf.VariableAggregation.MEAN}
        self.moving_mean = tf.Variable(tf.zeros([channels]), name='moving_mean', **stat)
        self.moving_variance = tf.Variable(tf.ones([channels]), name='moving_variance', **stat)
        self.momentum = momentum
        self.epsilon = epsilon

    def __call__(self, x, training, update_stats=True):
        """x: [..., channels] -> same shape and dtype.

        training: normalise with the batch moments and, if update_stats, update the moving
        averages; otherwise normalise with the moving averages.
        """
        x = tf.convert_to_tensor(x)
        x4 = x if x.shape.rank == 4 else tf.reshape(x, [1, 1, -1, x.shape[-1]])
        if training:
            empty = tf.zeros([0])
            out = _fused_batch_norm(x4, self.gamma, self.beta, empty, empty, self.epsilon, training=True)
            if update_stats:
                # The kernel returns the unbiased variance n / (n - 1) v (v itself when n = 1).
                n = tf.cast(tf.size(x4, out_type=tf.int64) // x4.shape[-1], tf.float32)
                variance = out.batch_variance * (tf.maximum(n - 1.0, 1.0) / n)
                self.moving_mean.assign(self.momentum * self.moving_mean + (1 - self.momentum) * out.batch_mean)
                self.moving_variance.assign(self.momentum * self.moving_variance + (1 - self.momentum) * variance)
        else:
            out = _fused_batch_norm(
                x4, self.gamma, self.beta, self.moving_mean, self.moving_variance, self.epsilon, training=False
            )
        return out.y if x.shape.rank == 4 else tf.reshape(out.y, tf.shape(x))


def _fused_batch_norm(x, gamma, beta, mean, variance, epsilon, training):
    """`FusedBatchNormV3` on NHWC `x` (float32/16, bfloat16) with float32 gamma, beta and statistics.

    training: normalise with the batch moments (mean, variance: empty [0]); returns y (x's type),
    batch_mean and the unbiased batch_variance [C]. Otherwise normalise with `mean`, `variance`.
    """
    return tf.raw_ops.FusedBatchNormV3(
        x=x,
        scale=gamma,
        offset=beta,
        mean=mean,
        variance=variance,
        epsilon=epsilon,
        exponential_avg_factor=1.0,
        data_format='NHWC',
        is_training=training,
    )


@dataclasses.dataclass(frozen=True)
class Heads:
    """The heads an algorithm adds to the classifier (`Algorithm.heads`); none by default.

    ova: one-vs-all head, K binary classifiers: 2K logits without bias (as the OpenMatch and
    IOMatch authors' `nn.Linear(d, 2K, bias=False)`), the K "outside" logits first, then the K
    "inside" ones (their `view(B, 2, K)`; `openset.ova_probs`); open: (K+1)-way open-set head,
    class K = outlier (IOMatch); projection: width of the MLP (dense d -> d, ReLU, dense d -> projection)
    between the pooled features and these heads (IOMatch: 128), 0 = they read the features.
    """

    ova: bool = False
    open: bool = False
    projection: int = 0

    def __bool__(self):
        return self.ova or self.open


class OpenSetHeads(tf.Module):
    """The extra heads of `Heads` on pooled features [B, width]."""

    def __init__(self, width, nclass, heads, compute_dtype, name=None):
        super().__init__(name=name)
        self.projection = None
        if heads.projection:
            self.projection = [
                Dense(width, width, compute_dtype=compute_dtype),
                Dense(width, heads.projection, compute_dtype=compute_dtype),
            ]
            width = heads.projection
        self.ova = Dense(width, 2 * nclass, compute_dtype=compute_dtype, use_bias=False) if heads.ova else None
        self.open = Dense(width, nclass + 1, compute_dtype=compute_dtype) if heads.open else None

    def __call__(self, features):
        """features [B, width] -> {'ova': logits [B, 2K], 'open': logits [B, K + 1]} (the heads it has)."""
        if self.projection is not None:
            features = self.projection[1](tf.nn.relu(self.projection[0](features)))
        out = {}
        if self.ova is not None:
            out['ova'] = self.ova(features)
        if self.open is not None:
            out['open'] = self.open(features)
        return out


class Classifier(tf.Module):
    """Common interface: features, logits, every head's output, kernels (weight-decay targets), head variables.

    Subclasses build `self.head` (the last Dense) and write `features`; `add_heads` adds the
    open-set heads of `Heads`.
    """

    open_set = None

    def add_heads(self, heads, width, nclass, compute_dtype):
        """Adds the extra heads `heads` (a `Heads`) reading the `width` pooled features."""
        if heads:
            self.open_set = OpenSetHeads(width, nclass, heads, compute_dtype)

    def features(self, x, training, update_stats):
        """x: [B, H, W, C] in [-1, 1] -> pooled features [B, width]."""
        raise NotImplementedError

    def __call__(self, x, training=False, update_stats=True):
        """x: [B, H, W, C] in [-1, 1] -> logits [B, nclass] float32."""
        return self.head(self.features(x, training, update_stats))

    def outputs(self, x, training=False, update_stats=True):
        """{'logits': [B, K], and 'ova' [B, 2K] / 'open' [B, K + 1] where the model has them} in one pass."""
        features = self.features(x, training, update_stats)
        out = {'logits': self.head(features)}
        if self.open_set is not None:
            out.update(self.open_set(features))
        return out

    @property
    def kernels(self):
        """Every conv and dense kernel (biases and batch-norm parameters excluded)."""
        return [m.kernel for m in self.submodules if isinstance(m, (Conv2D, Dense))]

    @property
    def head_variables(self):
        """The final dense layer's kernel and bias and the open-set heads' variables (not restored when fine-tuning)."""
        extra = list(self.open_set.variables) if self.open_set is not None else []
        return [self.head.kernel, self.head.bias] + extra


def _global_pool(x):
    """[B, H, W, C] -> [B, C] mean over space."""
    return tf.reduce_mean(x, axis=[1, 2])


class ResidualUnit(tf.Module):
    """Pre-activation residual unit: BN, lrelu, conv3x3 (stride), BN, lrelu, conv3x3.

    The shortcut is a 1x1 projection (with the same stride) when the shape changes. With
    `activate_before_residual` the shortcut starts from the activated input.
    """

    def __init__(self, filters_in, filters, stride, activate_before_residual, compute_dtype, name=None):
        super().__init__(name=name)
        self.bn1 = BatchNorm(filters_in)
        self.conv1 = Conv2D(filters_in, filters, 3, stride, compute_dtype=compute_dtype)
        self.bn2 = BatchNorm(filters)
        self.conv2 = Conv2D(filters, filters, 3, compute_dtype=compute_dtype)
        self.shortcut = None
        if filters_in != filters or stride != 1:
            self.shortcut = Conv2D(filters_in, filters, 1, stride, compute_dtype=compute_dtype)
        self.activate_before_residual = activate_before_residual

    def __call__(self, x0, training, update_stats):
        x = _leaky_relu(self.bn1(x0, training, update_stats))
        if self.activate_before_residual:
            x0 = x
        y = self.conv1(x)
        y = self.conv2(_leaky_relu(self.bn2(y, training, update_stats)))
        if self.shortcut is not None:
            x0 = self.shortcut(x0)
        return tf.cast(x0, y.dtype) + y


class WideResNet(Classifier):
    """Wide-ResNet as in MixMatch (WRN-28-2 with the defaults at 32x32): docs/algorithms.md#the-model."""

    def __init__(
        self, nclass, channels, filters=32, repeat=4, scales=3, compute_dtype='float32', heads=Heads(), name=None
    ):
        super().__init__(name=name)
        self.stem = Conv2D(channels, 16, 3, compute_dtype=compute_dtype)
        self.units = []
        width = 16
        for stage in range(scales):
            for i in range(repeat):
                stride = 2 if stage and i == 0 else 1
                self.units.append(ResidualUnit(width, filters << stage, stride, stage == 0 and i == 0, compute_dtype))
                width = filters << stage
        self.bn = BatchNorm(width)
        self.head = Dense(width, nclass, compute_dtype=compute_dtype)
        self.add_heads(heads, width, nclass, compute_dtype)

    def features(self, x, training, update_stats):
        y = self.stem(x)
        for unit in self.units:
            y = unit(y, training, update_stats)
        return _global_pool(_leaky_relu(self.bn(y, training, update_stats)))


class ConvBlock(tf.Module):
    """conv3x3, BN, leaky ReLU."""

    def __init__(self, filters_in, filters, compute_dtype, name=None):
        super().__init__(name=name)
        self.conv = Conv2D(filters_in, filters, 3, compute_dtype=compute_dtype)
        self.bn = BatchNorm(filters)

    def __call__(self, x, training, update_stats):
        return _leaky_relu(self.bn(self.conv(x), training, update_stats))


class ConvNet(Classifier):
    """Plain conv net: a stem block, then per scale two blocks (filters << s, filters << s+1)
    and a 2x2 max-pool; global average pool; dense to nclass."""

    def __init__(self, nclass, channels, filters=32, scales=3, compute_dtype='float32', heads=Heads(), name=None):
        super().__init__(name=name)
        self.stem = ConvBlock(channels, filters, compute_dtype)
        self.blocks = []
        for scale in range(scales):
            self.blocks.append(ConvBlock(filters << scale, filters << scale, compute_dtype))
            self.blocks.append(ConvBlock(filters << scale, filters << (scale + 1), compute_dtype))
        self.head = Dense(filters << scales, nclass, compute_dtype=compute_dtype)
        self.add_heads(heads, filters << scales, nclass, compute_dtype)

    def features(self, x, training, update_stats):
        y = self.stem(x, training, update_stats)
        for first, second in zip(self.blocks[0::2], self.blocks[1::2]):
            y = second(first(y, training, update_stats), training, update_stats)
            y = tf.nn.max_pool2d(y, 2, 2, 'SAME')
        return _global_pool(y)


class ShakeBranch(tf.Module):
    """One residual branch: relu, conv3x3 (stride), BN, relu, conv3x3, BN."""

    def __init__(self, filters_in, filters, stride, compute_dtype, name=None):
        super().__init__(name=name)
        self.conv1 = Conv2D(filters_in, filters, 3, stride, use_bias=False, compute_dtype=compute_dtype)
        self.bn1 = BatchNorm(filters)
        self.conv2 = Conv2D(filters, filters, 3, use_bias=False, compute_dtype=compute_dtype)
        self.bn2 = BatchNorm(filters)

    def __call__(self, x, training, update_stats):
        y = tf.nn.relu(self.bn1(self.conv1(tf.nn.relu(x)), training, update_stats))
        return self.bn2(self.conv2(y), training, update_stats)


class ShakeUnit(tf.Module):
    """Shake-shake unit: two branches mixed by a per-sample uniform alpha in training (a
    different uniform beta scales the gradients), by 0.5 at evaluation, plus a shortcut
    (relu, 1x1 conv, BN when the shape changes; identity otherwise)."""

    def __init__(self, filters_in, filters, stride, compute_dtype, name=None):
        super().__init__(name=name)
        self.branch1 = ShakeBranch(filters_in, filters, stride, compute_dtype)
        self.branch2 = ShakeBranch(filters_in, filters, stride, compute_dtype)
        self.shortcut = None
        if filters_in != filters or stride != 1:
            self.shortcut = Conv2D(filters_in, filters, 1, stride, use_bias=False, compute_dtype=compute_dtype)
            self.shortcut_bn = BatchNorm(filters)

    def __call__(self, x, training, update_stats):
        a = self.branch1(x, training, update_stats)
        b = self.branch2(x, training, update_stats)
        if training:
            shape = [tf.shape(a)[0], 1, 1, 1]
            alpha = tf.random.uniform(shape, dtype=a.dtype)
            beta = tf.random.uniform(shape, dtype=a.dtype)
            mixed = beta * a + (1 - beta) * b + tf.stop_gradient((alpha - beta) * (a - b))
        else:
            mixed = 0.5 * (a + b)
        if self.shortcut is not None:
            x = self.shortcut_bn(self.shortcut(tf.nn.relu(x)), training, update_stats)
        return tf.cast(x, mixed.dtype) + mixed


class ShakeShake(Classifier):
    """Shake-shake ResNet: conv3x3 to 16 + BN, `scales` stages of `repeat` shake units with
    filters << stage channels (stride 2 at each later stage's first unit), relu, global pool,
    dense."""

    def __init__(
        self, nclass, channels, filters=32, repeat=4, scales=3, compute_dtype='float32', heads=Heads(), name=None
    ):
        super().__init__(name=name)
        self.stem = Conv2D(channels, 16, 3, use_bias=False, compute_dtype=compute_dtype)
        self.stem_bn = BatchNorm(16)
        self.units = []
        width = 16
        for stage in range(scales):
            for i in range(repeat):
                self.units.append(ShakeUnit(width, filters << stage, 2 if stage and i == 0 else 1, compute_dtype))
                width = filters << stage
        self.head = Dense(width, nclass, compute_dtype=compute_dtype)
        self.add_heads(heads, width, nclass, compute_dtype)

    def features(self, x, training, update_stats):
        y = self.stem_bn(self.stem(x), training, update_stats)
        for unit in self.units:
            y = unit(y, training, update_stats)
        return _global_pool(tf.nn.relu(y))


def copy_moving_statistics(source, target):
    """Copies every batch-norm moving mean and variance of `source` into `target` (same architecture).

    The EMA model evaluates with the raw model's moving statistics (they are averages already):
    call this before evaluating, saving or exporting the EMA model, and after restoring it.
    """
    for src, dst in zip(source.submodules, target.submodules, strict=True):
        if isinstance(src, BatchNorm):
            dst.moving_mean.assign(src.moving_mean)
            dst.moving_variance.assign(src.moving_variance)


def default_scales(size):
    """log2(size) - 2 stages (3 at 32x32, 2 at 16x16), at least 1."""
    return max(int(math.log2(size)) - 2, 1)


def create_model(
    arch, nclass, shape, filters=32, repeat=4, scales=0, compute_dtype='float32', bn_momentum=0.999, heads=Heads()
):
    """Builds the classifier `arch` for images of `shape` (H, W, C) and `nclass` classes.

    scales=0 picks default_scales(H); `bn_momentum` is every batch norm's moving-average
    momentum; `heads`: the extra heads (`Heads`). Raises UserError for an unknown arch or dtype.
    """
    model = _create(arch, nclass, shape, filters, repeat, scales, compute_dtype, heads)
    for module in model.submodules:
        if isinstance(module, BatchNorm):
            module.momentum = bn_momentum
    return model


def _create(arch, nclass, shape, filters, repeat, scales, compute_dtype, heads):
    if compute_dtype not in ('float32', 'float16', 'bfloat16'):
        raise UserError(f'unknown compute dtype {compute_dtype!r}: expected float32, float16 or bfloat16')
    scales = scales or default_scales(shape[0])
    channels = shape[-1]
    if arch == 'resnet':
        return WideResNet(nclass, channels, filters, repeat, scales, compute_dtype, heads)
    if arch == 'convnet':
        return ConvNet(nclass, channels, filters, scales, compute_dtype, heads)
    if arch == 'shake':
        return ShakeShake(nclass, channels, filters, repeat, scales, compute_dtype, heads)
    raise UserError(f'--arch={arch}: unknown architecture, expected one of {", ".join(ARCHS)}')
