"""The project's TensorFlow Wide-ResNet variables under the names of its PyTorch twin (scripts/parity/wrn.py).

NumPy only: the TensorFlow side converts its weights and gradients here, the PyTorch side loads them.
Layouts: conv kernels [k, k, in, out] -> [out, in, k, k]; dense kernels [in, out] -> [out, in].
"""

import numpy as np


def _conv(prefix, conv):
    return [(f'{prefix}.weight', conv.kernel), (f'{prefix}.bias', conv.bias)]


def _bn(prefix, bn):
    return [
        (f'{prefix}.weight', bn.gamma),
        (f'{prefix}.bias', bn.beta),
        (f'{prefix}.running_mean', bn.moving_mean),
        (f'{prefix}.running_var', bn.moving_variance),
    ]


def named_variables(model):
    """[(PyTorch state_dict name, tf.Variable)] of a project `WideResNet`, trainable and statistics."""
    pairs = _conv('stem', model.stem)
    for i, unit in enumerate(model.units):
        prefix = f'units.{i}'
        pairs += _bn(f'{prefix}.bn1', unit.bn1) + _conv(f'{prefix}.conv1', unit.conv1)
        pairs += _bn(f'{prefix}.bn2', unit.bn2) + _conv(f'{prefix}.conv2', unit.conv2)
        if unit.shortcut is not None:
            pairs += _conv(f'{prefix}.shortcut', unit.shortcut)
    pairs += _bn('bn', model.bn)
    pairs += [('head.weight', model.head.kernel), ('head.bias', model.head.bias)]
    return pairs


def to_torch(value):
    """A TensorFlow kernel (or any other variable) in PyTorch's layout, float32."""
    value = np.asarray(value, np.float32)
    if value.ndim == 4:
        return value.transpose(3, 2, 0, 1)
    return value.T if value.ndim == 2 else value


def state_dict(model):
    """{PyTorch name: float32 array} of every variable of `model` (load with strict=False: no counters)."""
    return {name: to_torch(variable.numpy()) for name, variable in named_variables(model)}


def gradients(model, variables, grads):
    """{PyTorch name: float32 array} of `grads` of the trainable `variables` of `model` (same order)."""
    names = {id(variable): name for name, variable in named_variables(model)}
    return {names[id(v)]: to_torch(g) for v, g in zip(variables, grads, strict=True)}
