"""Trains USB's own implementation of one parity cell on the CPU (run in USB's venv).

    .venv-parity/bin/python -m scripts.parity.usb_train --cell=CELL.json --data=SPLIT.npz --out=RESULT.json

USB's algorithm object (`get_algorithm`) with the project's Wide-ResNet in its net builder
(scripts/parity/wrn.py), the split's arrays in `BasicDataset`s, and a CPU loop that runs the body
of `AlgorithmBase.train` (semilearn/core/algorithmbase.py:335-367): `train_step` on
`process_batch` of one labelled and one unlabelled batch, then the `after_train_step` hooks
(parameter update, EMA, the algorithm's own). Left out are the hooks that need CUDA or write
USB's own files (Timer, Evaluation, Checkpoint, Logging, DistSamplerSeed): in their place the
harness evaluates with USB's `evaluate` (EMA weights, the live model's batch-norm statistics) on the
test images every report period and checkpoints there. USB's `Trainer` cannot run here: it needs CUDA.

Data order: USB's samplers seed their shuffles with the epoch number only (semilearn/datasets/
samplers/sampler.py:57-58), so every seed would see one order; `SeededSampler` draws pass p's
permutation from (seed, p). Resumable: an interrupted cell continues from its last report.
"""

import argparse
import dataclasses
import json
import logging
import os
import random
import time

import numpy as np
import torch

from scripts.parity import spec, usb, wrn

EVAL_BATCH = 256
# Hooks of AlgorithmBase.set_hooks (algorithmbase.py:253-268) replaced by the harness (CUDA timers, USB's files).
SKIPPED_HOOKS = {'TimerHook', 'EvaluationHook', 'CheckpointHook', 'LoggingHook', 'DistSamplerSeedHook'}


class SeededSampler(torch.utils.data.Sampler):
    """`length` draws (from draw `start` on) of indices of a dataset of `n`: pass p permutes them by (seed, p)."""

    def __init__(self, n, seed, length, start=0):
        self.n, self.seed, self.length, self.start = n, seed, length, start

    def __iter__(self):
        draw = self.start
        while draw < self.length:
            rank, offset = divmod(draw, self.n)
            order = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed * 1_000_003 + rank))
            taken = order[offset : offset + min(self.n - offset, self.length - draw)].tolist()
            yield from taken
            draw += len(taken)

    def __len__(self):
        return self.length - self.start


def cpu_seconds():
    """CPU seconds (user + system) of this process, its live children (data-loader workers) and its reaped ones."""
    total = time.process_time()
    children = os.times()
    total += children.children_user + children.children_system
    tick = os.sysconf('SC_CLK_TCK')
    for pid in os.listdir('/proc'):
        if not pid.isdigit():
            continue
        try:
            with open(f'/proc/{pid}/stat') as f:
                fields = f.read().rsplit(')', 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == os.getpid():  # fields[1] is the parent pid; [11], [12] utime, stime
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def usb_args(cell, nclass, n_lb, n_ulb, workdir, workers):
    """USB's argument namespace for `cell`: the project's recipe in USB's names."""
    algorithm, s = spec.ALGORITHMS[cell.algorithm], cell.schedule
    hyper = dict(algorithm.usb)
    if 'warmup_kimg' in hyper:  # MixMatch ramps over kimg in the project, over a share of the run in USB
        hyper['unsup_warm_up'] = hyper.pop('warmup_kimg') / s.kimg
    recipe = algorithm.recipe
    settings = dict(
        algorithm=cell.algorithm,
        ulb_loss_ratio=0.0,  # read by AlgorithmBase even for the supervised baseline
        num_classes=nclass,
        ema_m=s.ema,
        epoch=1,
        num_train_iter=s.steps,
        num_eval_iter=s.report_steps,
        num_log_iter=s.report_steps,
        use_cat=True,
        amp=False,
        clip_grad=0,
        save_name='usb',
        save_dir=workdir,
        resume=False,
        gpu=None,
        rank=0,
        distributed=False,
        multiprocessing_distributed=False,
        world_size=1,
        dataset='parity',  # not one of USB's: get_dataset returns None and the harness sets the loaders
        num_labels=n_lb,
        lb_dest_len=n_lb,
        ulb_dest_len=n_ulb,
        data_dir='',
        include_lb_to_ulb=False,
        optim=recipe['optim'],
        lr=recipe['lr'],
        momentum=recipe['momentum'],
        weight_decay=recipe['weight_decay'],
        layer_decay=1.0,
        num_warmup_iter=0,
        use_pretrain=False,
        pretrain_path='',
        use_wandb=False,
        use_aim=False,
        net='parity_wrn',
        batch_size=s.batch,
        uratio=algorithm.uratio,
        eval_batch_size=EVAL_BATCH,
        train_sampler='RandomSampler',
        num_workers=workers,
        seed=cell.seed,
    )
    return argparse.Namespace(**{**settings, **hyper})


def image_transforms(schedule, side, channels):
    """(weak, strong, eval) torchvision transforms of RGB PIL images -> float [channels, H, W] in [-1, 1].

    weak = the project's --augment: cifar10 = mirror + 4-pixel shift with reflected borders, svhn =
    the shift only; strong = weak, then USB's RandAugment with 2 ops (the project's count; USB's
    CIFAR recipe draws 3) at random magnitudes, followed by USB's Cutout of random size up to half
    the side. Grey images travel as RGB (USB's Cutout fills with an RGB colour, which PIL refuses
    for mode L) and are turned back to one channel at the end (exactly: R = G = B).
    """
    from semilearn.datasets.augmentation import RandAugment
    from torchvision import transforms

    tensor = [transforms.ToTensor(), transforms.Normalize([0.5] * channels, [0.5] * channels)]
    if channels == 1:
        tensor.insert(0, transforms.Grayscale(1))
    geometric = [transforms.RandomCrop(side, padding=4, padding_mode='reflect')]
    if schedule.augment == 'cifar10':
        geometric.append(transforms.RandomHorizontalFlip())
    elif schedule.augment != 'svhn':
        raise ValueError(f'--augment={schedule.augment}: the harness mirrors cifar10 and svhn only')
    weak = transforms.Compose(geometric + tensor)
    strong = transforms.Compose(geometric + [RandAugment(2, 10)] + tensor)
    return weak, strong, transforms.Compose(tensor)


def _rgb(images):
    """uint8 [N, H, W, C] -> [N, H, W, 3] (grey images repeated over the three channels)."""
    return np.repeat(images, 3, axis=-1) if images.shape[-1] == 1 else images


def build(cell, arrays, workdir, workers, logger):
    """(USB algorithm with its data loaders set, labelled and unlabelled datasets)."""
    sl = usb.semilearn()
    s = cell.schedule
    algorithm = spec.ALGORITHMS[cell.algorithm]
    x_lb, x_ulb, x_test = (_rgb(arrays[k]) for k in ('x_lb', 'x_ulb', 'x_test'))
    nclass, channels = int(arrays['nclass']), arrays['x_lb'].shape[-1]
    args = usb_args(cell, nclass, len(x_lb), len(x_ulb), workdir, workers)
    scales = s.scales or max(int(np.log2(x_lb.shape[1])) - 2, 1)  # the project's default_scales
    builder = wrn.builder(channels, s.filters, s.repeat, scales, s.bn_momentum)
    usb_algorithm = sl.get_algorithm(args, builder, None, logger)
    if not algorithm.recipe['cosine']:
        usb_algorithm.scheduler = None  # the project's Adam runs at a constant rate (USB always builds a cosine)
    weak, strong, plain = image_transforms(s, x_lb.shape[1], channels)
    name = cell.algorithm
    datasets = dict(
        train_lb=sl.BasicDataset(name, x_lb, arrays['y_lb'], nclass, weak, False),
        train_ulb=sl.BasicDataset(name, x_ulb, arrays['y_ulb'], nclass, weak, True, strong),
        eval=sl.BasicDataset(name, x_test, arrays['y_test'], nclass, plain, False),
    )
    usb_algorithm.dataset_dict = datasets
    usb_algorithm.loader_dict = {
        'eval': torch.utils.data.DataLoader(datasets['eval'], batch_size=EVAL_BATCH, shuffle=False, num_workers=0)
    }
    return usb_algorithm, datasets


def train_loaders(cell, datasets, start_step, workers):
    """Labelled and (for SSL algorithms) unlabelled batch iterators from step `start_step` to the end."""
    s, uratio = cell.schedule, spec.ALGORITHMS[cell.algorithm].uratio
    loaders = []
    for key, batch in (('train_lb', s.batch), ('train_ulb', s.batch * uratio)):
        if key == 'train_ulb' and cell.algorithm == 'fullysupervised':
            break
        sampler = SeededSampler(len(datasets[key]), cell.seed * 2 + len(loaders), s.steps * batch, start_step * batch)
        generator = torch.Generator().manual_seed(cell.seed * 7919 + start_step + len(loaders))  # worker seeds
        loaders.append(
            iter(
                torch.utils.data.DataLoader(
                    datasets[key],
                    batch_size=batch,
                    sampler=sampler,
                    num_workers=workers,
                    drop_last=True,
                    generator=generator,
                )
            )
        )
    return loaders


def _hooks(algorithm, event):
    """Runs every registered hook's `event` but those the harness replaces (as AlgorithmBase.call_hook does)."""
    for hook in algorithm.hooks_dict.values():
        if hook.name not in SKIPPED_HOOKS and hasattr(hook, event):
            getattr(hook, event)(algorithm)


def _hook_tensors(algorithm):
    """{hook: {attribute: tensor}}: what the algorithm's own hooks carry across steps (FlexMatch's selected
    labels, FreeMatch's and SoftMatch's EMAs), which USB's own checkpoint saves in `get_save_dict`."""
    return {
        name: {k: v for k, v in vars(hook).items() if torch.is_tensor(v)}
        for name, hook in algorithm.hooks_dict.items()
        if name not in SKIPPED_HOOKS
    }


def _save(path, algorithm, state):
    torch.save(
        dict(
            hooks=_hook_tensors(algorithm),
            model=algorithm.model.state_dict(),
            shadow=algorithm.ema.shadow,
            optimizer=algorithm.optimizer.state_dict(),
            scheduler=algorithm.scheduler.state_dict() if algorithm.scheduler else None,
            it=algorithm.it,
            state=state,
            rng=(torch.get_rng_state(), np.random.get_state(), random.getstate()),
        ),
        path + '.tmp',
    )
    os.replace(path + '.tmp', path)


def _restore(path, algorithm):
    saved = torch.load(path, weights_only=False)
    algorithm.model.load_state_dict(saved['model'])
    algorithm.ema.shadow = saved['shadow']
    algorithm.ema_model.load_state_dict(algorithm.model.state_dict())
    algorithm.ema_model.load_state_dict(algorithm.ema.shadow, strict=False)
    algorithm.optimizer.load_state_dict(saved['optimizer'])
    if algorithm.scheduler:
        algorithm.scheduler.load_state_dict(saved['scheduler'])
    algorithm.it = saved['it']
    for name, tensors in saved['hooks'].items():
        vars(algorithm.hooks_dict[name]).update(tensors)
    torch.set_rng_state(saved['rng'][0])
    np.random.set_state(saved['rng'][1])
    random.setstate(saved['rng'][2])
    return saved['state']


def train(cell, arrays, out, workers=1):
    """Trains `cell` (side usb) and writes `out` (JSON: curve, cpu, img_per_sec, status) after every report."""
    workdir = out + '.d'
    os.makedirs(workdir, exist_ok=True)
    logger = logging.getLogger(f'usb.{cell.key}')
    logger.addHandler(logging.FileHandler(os.path.join(workdir, 'usb.log')))
    logger.setLevel(logging.INFO)
    logger.propagate = False
    usb.cpu_only()
    torch.manual_seed(cell.seed)
    np.random.seed(cell.seed)
    random.seed(cell.seed)
    algorithm, datasets = build(cell, arrays, workdir, workers, logger)
    algorithm.model.train()
    _hooks(algorithm, 'before_run')  # EMAHook: the EMA starts from the initial weights
    checkpoint = os.path.join(workdir, 'checkpoint.pt')
    state = dict(curve=[], cpu=[], img_per_sec=[], cpu_before=0.0)
    if os.path.exists(checkpoint):
        state = _restore(checkpoint, algorithm)
    s = cell.schedule
    streams = train_loaders(cell, datasets, algorithm.it, workers)
    cpu_start = cpu_seconds() - state['cpu_before']
    began = time.time()
    while algorithm.it < s.steps:
        batches = [next(stream) for stream in streams]
        kwargs = {k: v for batch in batches for k, v in batch.items()}
        _hooks(algorithm, 'before_train_step')
        algorithm.out_dict, algorithm.log_dict = algorithm.train_step(**algorithm.process_batch(**kwargs))
        _hooks(algorithm, 'after_train_step')
        algorithm.it += 1
        if algorithm.it % s.report_steps == 0 or algorithm.it == s.steps:
            images = algorithm.it * s.batch
            period = images - (state['curve'][-1][0] if state['curve'] else 0)
            rate = period / max(time.time() - began, 1e-9)
            accuracy = 100.0 * algorithm.evaluate('eval')['eval/top-1-acc']
            state['curve'].append((images, accuracy))
            state['img_per_sec'].append((images, rate))
            state['cpu_before'] = cpu_seconds() - cpu_start
            state['cpu'].append((images, state['cpu_before']))
            _save(checkpoint, algorithm, state)
            _write(out, cell, state, 'done' if algorithm.it == s.steps else 'training')
            print(f'kimg {images >> 10:4d}  test {accuracy:5.1f}%  {rate:6.1f} img/s', flush=True)
            began = time.time()
    return state


def _write(path, cell, state, status):
    result = dict(cell=dataclasses.asdict(cell), status=status)
    result.update({k: state[k] for k in ('curve', 'cpu', 'img_per_sec')})
    with open(path + '.tmp', 'w') as f:
        json.dump(result, f, indent=1)
    os.replace(path + '.tmp', path)


def cell_from_json(text):
    """A spec.Cell from its `dataclasses.asdict` JSON."""
    fields = json.loads(text)
    return spec.Cell(**dict(fields, schedule=spec.Schedule(**fields['schedule'])))


def main():
    import warnings

    warnings.filterwarnings('ignore', message='.*GradScaler')  # USB's loss scaler: deprecated, and disabled on a CPU
    warnings.filterwarnings('ignore', message='.*ill-defined')  # evaluate's macro precision of an untrained model
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--cell', required=True, help='The cell, as JSON (dataclasses.asdict of spec.Cell).')
    parser.add_argument('--data', required=True, help='The split arrays (.npz written by the harness).')
    parser.add_argument('--out', required=True, help='Result JSON, rewritten at every report (OUT.d/: checkpoint).')
    parser.add_argument('--workers', type=int, default=1, help='Data-loader worker processes per stream.')
    options = parser.parse_args()
    with np.load(options.data) as f:
        arrays = dict(f)
    train(cell_from_json(options.cell), arrays, options.out, options.workers)


if __name__ == '__main__':
    main()
