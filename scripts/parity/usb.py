"""USB (PyPI `semilearn` 0.3.2) imported beside a CPU build of torch: the two shims it needs.

Run in USB's venv (`make parity-env` builds it and runs this module as its smoke check):

    .venv-parity/bin/python -m scripts.parity.usb

1. torchaudio, wandb and aim: semilearn imports them at start-up (its audio datasets and two
   logging hooks) and its image algorithms never call them; empty packages in `stubs/` stand in
   (torchaudio pairs with a single torch release, wandb and aim log to remote services).
2. torchvision 0.28.0 from PyPI is built for CUDA: beside the CPU torch its compiled ops do not
   load, and its `_meta_registrations.py` (lines 163 and 177) then fails to register fake kernels
   for `torchvision::nms` and `qnms` ("operator torchvision::nms does not exist"), which stops
   `import torchvision`. Declaring those two schemas first (no kernel: calling them fails) lets
   it import; USB's image pipeline uses only torchvision's transforms, which are pure Python.
3. `cpu_only()`: USB moves every batch with `.cuda()` (semilearn/core/algorithmbase.py:291-293 in
   `process_batch`, 389-392 in `evaluate`); on a CPU build of torch that call fails, so it becomes
   the identity and USB's own `process_batch` and `evaluate` run unchanged.
"""

import os
import sys

from scripts.parity import spec

STUBS = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'stubs')
USB_ALGORITHMS = tuple(spec.ALGORITHMS)
_LIBRARY = []  # the torch.library.Library declaring the torchvision schemas (kept alive)


def _declare_torchvision_ops():
    """Declares `torchvision::nms` and `qnms` (schemas only) unless torchvision's own ops are loaded."""
    import torch

    if _LIBRARY or hasattr(torch.ops.torchvision, 'nms'):
        return
    library = torch.library.Library('torchvision', 'DEF')
    library.define('nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor')
    library.define('qnms(Tensor qdets, float x1, Tensor scores, float iou_threshold) -> Tensor')
    _LIBRARY.append(library)


def cpu_only():
    """Makes `Tensor.cuda()` return the tensor itself (this machine has no GPU; see 3. above)."""
    import torch

    torch.Tensor.cuda = lambda self, *args, **kwargs: self


def semilearn():
    """The `semilearn` package, imported with the shims above."""
    if STUBS not in sys.path:
        sys.path.append(STUBS)  # after site-packages: a real torchaudio, wandb or aim wins
    _declare_torchvision_ops()
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter('ignore', FutureWarning)  # timm.models.layers is deprecated (semilearn/nets/vit)
        import semilearn as package
    return package


def main():
    package = semilearn()
    from semilearn.core.utils import ALGORITHMS

    missing = [a for a in USB_ALGORITHMS if a not in ALGORITHMS]
    if missing:
        raise SystemExit(f'semilearn {package.__file__} lacks the algorithms {missing}')
    import torch

    print(f'USB ready: semilearn at {os.path.dirname(package.__file__)}, torch {torch.__version__}')


if __name__ == '__main__':
    main()
