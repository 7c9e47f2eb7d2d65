"""The project's Wide-ResNet (libml/models.py `WideResNet`) in PyTorch, for USB's net builder.

Layer for layer as the TensorFlow model, so weights copy one to one (`scripts/parity/weights.py`):
- stem: 3x3 conv to 16 channels, with bias;
- `scales` stages of `repeat` pre-activation units, stage s of `filters << s` channels, stride 2
  at the first unit of every stage but the first: BN, leaky ReLU 0.1, 3x3 conv (stride), BN,
  leaky ReLU, 3x3 conv, plus a shortcut (1x1 conv with the same stride when the shape changes);
  the very first unit adds its activated input (`activate_before_residual`);
- BN, leaky ReLU, global average pool, dense head.
Convolutions pad as TensorFlow's 'SAME' (at stride 2 on an even side: 0 before, 1 after, where
PyTorch's symmetric padding=1 would shift the grid). Batch norm: epsilon 1e-3; PyTorch's
momentum is the weight of the new batch, so the project's 0.99 is 0.01 here (USB's own WRN uses
0.001, i.e. 0.999). Initialisation as the project's: He-normal conv kernels with
stddev sqrt(2 / (k k filters_out)), zero biases, Glorot-normal head truncated at 2 stddev.

Forward: images [B, C, H, W] in [-1, 1] -> {'logits': [B, K], 'feat': [B, width]} (USB's contract;
`only_feat` returns the features, `only_fc` maps features to logits).
"""

import math

import torch.nn.functional as F
from torch import nn

LEAKY_SLOPE = 0.1
BN_EPSILON = 1e-3


class SameConv2d(nn.Conv2d):
    """k x k convolution with TensorFlow's 'SAME' padding and the project's He-normal init."""

    def __init__(self, channels_in, channels, kernel_size, stride=1):
        super().__init__(channels_in, channels, kernel_size, stride, padding=0, bias=True)
        nn.init.normal_(self.weight, std=math.sqrt(2.0 / (kernel_size * kernel_size * channels)))
        nn.init.zeros_(self.bias)

    def forward(self, x):
        pads = []
        for size in (x.shape[3], x.shape[2]):  # F.pad's order: last dimension first
            total = max((math.ceil(size / self.stride[0]) - 1) * self.stride[0] + self.kernel_size[0] - size, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads) if any(pads) else x)


def batch_norm(channels, momentum):
    """BatchNorm2d with the project's epsilon; `momentum` in the project's (TensorFlow's) convention."""
    return nn.BatchNorm2d(channels, eps=BN_EPSILON, momentum=1.0 - momentum)


def _activate(x):
    return F.leaky_relu(x, LEAKY_SLOPE)


class ResidualUnit(nn.Module):
    """Pre-activation unit: BN, lrelu, conv3x3 (stride), BN, lrelu, conv3x3, plus the shortcut."""

    def __init__(self, channels_in, channels, stride, activate_before_residual, bn_momentum):
        super().__init__()
        self.bn1 = batch_norm(channels_in, bn_momentum)
        self.conv1 = SameConv2d(channels_in, channels, 3, stride)
        self.bn2 = batch_norm(channels, bn_momentum)
        self.conv2 = SameConv2d(channels, channels, 3)
        changes = channels_in != channels or stride != 1
        self.shortcut = SameConv2d(channels_in, channels, 1, stride) if changes else None
        self.activate_before_residual = activate_before_residual

    def forward(self, x0):
        x = _activate(self.bn1(x0))
        if self.activate_before_residual:
            x0 = x
        y = self.conv2(_activate(self.bn2(self.conv1(x))))
        return (self.shortcut(x0) if self.shortcut is not None else x0) + y


class WideResNet(nn.Module):
    """The project's `WideResNet(nclass, channels, filters, repeat, scales)` with its batch-norm momentum."""

    def __init__(self, num_classes, channels, filters=32, repeat=4, scales=3, bn_momentum=0.999):
        super().__init__()
        self.stem = SameConv2d(channels, 16, 3)
        units, width = [], 16
        for stage in range(scales):
            for i in range(repeat):
                stride = 2 if stage and i == 0 else 1
                units.append(ResidualUnit(width, filters << stage, stride, stage == 0 and i == 0, bn_momentum))
                width = filters << stage
        self.units = nn.ModuleList(units)
        self.bn = batch_norm(width, bn_momentum)
        self.head = nn.Linear(width, num_classes)
        std = math.sqrt(2.0 / (width + num_classes)) / 0.87962566103423978
        nn.init.trunc_normal_(self.head.weight, std=std, a=-2 * std, b=2 * std)
        nn.init.zeros_(self.head.bias)
        self.num_features = width

    def forward(self, x, only_fc=False, only_feat=False, **kwargs):
        if only_fc:
            return self.head(x)
        y = self.stem(x)
        for unit in self.units:
            y = unit(y)
        feat = _activate(self.bn(y)).mean(dim=(2, 3))
        if only_feat:
            return feat
        return {'logits': self.head(feat), 'feat': feat}

    def no_weight_decay(self):
        """Parameter names USB's optimiser leaves undecayed: biases and batch-norm scales (as the project)."""
        return [name for name, p in self.named_parameters() if p.ndim <= 1]


def builder(channels, filters, repeat, scales, bn_momentum):
    """USB's `net_builder`: a callable (num_classes, pretrained=..., ...) -> WideResNet of this spec."""

    def build(num_classes, **kwargs):
        return WideResNet(num_classes, channels, filters, repeat, scales, bn_momentum)

    return build
