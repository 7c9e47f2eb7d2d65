"""USB's side of the step-level check (run in USB's venv by scripts/parity/step_check.py).

    .venv-parity/bin/python -m scripts.parity.usb_step IN.npz OUT.npz

IN (written by step_check.py): `cell` (JSON of a spec.Cell), `it` (the step), the project's weights
`w/<name>` and EMA weights `e/<name>` in PyTorch names and layouts, the batch (`x_lb` [b, C, H, W],
`y_lb` [b], `x_ulb_w`, `x_ulb_s` [u, C, H, W]), `hyper/<USB argument>` overrides (thresholds), and the
draws fixed for the check: `lam` and `perm` (MixMatch's MixUp), `vat_d` (VAT's random direction),
and `vat_xi` (VAT's finite-difference step, when the check sets it); for the algorithms with state,
the unlabelled rows' indices `idx_ulb` in a file of `ulb_len` images and the state before the step,
`state/<hook>/<attribute>`.
OUT: `loss` and `g/<name>` (d loss / d parameter) of USB's `train_step` on that batch, before any update,
and `state/<hook>/<attribute>` after the step.
"""

import contextlib
import json
import sys

import numpy as np
import torch

from scripts.parity import usb, usb_train, wrn


class _FixedNormalTorch:
    """Stands for `torch` in semilearn's vat.py, whose `torch.Tensor(size).normal_()` (vat.py:82) then yields `d`."""

    def __init__(self, d):
        self._d = d

    def __getattr__(self, name):
        return getattr(torch, name)

    def Tensor(self, *size):  # noqa: N802 (torch's name)
        d = self._d

        class Draw:
            def normal_(self):
                return d.clone()

        return Draw()


@contextlib.contextmanager
def fixed_draws(arrays):
    """USB's random draws inside `train_step` replaced by the check's: MixUp's lambda and pairing, VAT's direction."""
    from semilearn.algorithms.vat import vat

    saved = (np.random.beta, torch.randperm, vat.torch, vat.VAT.vat_loss)
    try:
        if 'lam' in arrays:  # algorithms/utils/ops.py:53-59 mixup_one_target
            lam, perm = float(arrays['lam']), torch.from_numpy(arrays['perm'].astype(np.int64))
            np.random.beta = lambda a, b: lam
            torch.randperm = lambda n, *args, **kwargs: perm
        if 'vat_d' in arrays:
            vat.torch = _FixedNormalTorch(torch.from_numpy(arrays['vat_d']))
        if 'vat_xi' in arrays:  # vat.py:77 vat_loss(..., xi=1e-6, ...), called with the default (vat.py:62)
            vat_loss, xi = saved[3], float(arrays['vat_xi'])
            vat.VAT.vat_loss = lambda self, *args, **kwargs: vat_loss(self, *args, **dict(kwargs, xi=xi))
        yield
    finally:
        np.random.beta, torch.randperm, vat.torch, vat.VAT.vat_loss = saved


def step(arrays):
    """(loss, {name: gradient}) of USB's train_step on the check's batch and weights."""
    sl = usb.semilearn()
    usb.cpu_only()
    cell = usb_train.cell_from_json(str(arrays['cell']))
    s = cell.schedule
    nclass, channels = int(arrays['nclass']), arrays['x_lb'].shape[1]
    args = usb_train.usb_args(cell, nclass, len(arrays['y_lb']), int(arrays['ulb_len']), '/tmp', 0)
    for key in arrays:
        if key.startswith('hyper/'):
            setattr(args, key[len('hyper/') :], arrays[key].item())
    scales = int(arrays['scales'])
    algorithm = sl.get_algorithm(args, wrn.builder(channels, s.filters, s.repeat, scales, s.bn_momentum), None, None)
    weights = {k[2:]: torch.from_numpy(v) for k, v in arrays.items() if k.startswith('w/')}
    algorithm.model.load_state_dict(weights, strict=True)
    algorithm.model.train()
    from semilearn.core.utils import EMA

    algorithm.ema = EMA(algorithm.model, algorithm.ema_m)
    algorithm.ema.register()
    algorithm.ema.shadow = {k[2:]: torch.from_numpy(v) for k, v in arrays.items() if k.startswith('e/')}
    algorithm.it = int(arrays['it'])
    state = [key.split('/')[1:] for key in arrays if key.startswith('state/')]
    for hook, attribute in state:
        setattr(algorithm.hooks_dict[hook], attribute, torch.from_numpy(arrays[f'state/{hook}/{attribute}']))
        if attribute == 'selected_label':  # FlexMatch's learning effects follow its labels (flexmatch/utils.py:24)
            algorithm.hooks_dict[hook].update()
    keys = ('x_lb', 'y_lb', 'idx_ulb', 'x_ulb_w', 'x_ulb_s')
    batch = {k: torch.from_numpy(arrays[k]) for k in keys}
    with fixed_draws(arrays):
        out, _ = algorithm.train_step(**algorithm.process_batch(**batch))
    out['loss'].backward()
    grads = {name: p.grad.numpy() for name, p in algorithm.model.named_parameters()}
    new_state = {f'{h}/{a}': getattr(algorithm.hooks_dict[h], a).numpy() for h, a in state}
    return float(out['loss']), grads, new_state


def main():
    source, target = sys.argv[1:]
    with np.load(source) as f:
        arrays = dict(f)
    loss, grads, state = step(arrays)
    outputs = {**{f'g/{k}': v for k, v in grads.items()}, **{f'state/{k}': v for k, v in state.items()}}
    np.savez(target, loss=np.float64(loss), **outputs)
    print(json.dumps({'loss': loss}))


if __name__ == '__main__':
    main()
