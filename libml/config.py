"""The run configuration: every setting of a run, declared once, parsed once, passed down frozen.

A setting is a `Setting` (name, default, help, valid range). The loop's settings are `LOOP`;
each algorithm declares its own next to its step (`Algorithm.settings`) and may change the
loop's defaults (`Algorithm.loop_defaults`: FixMatch's SGD and cosine decay). Entry scripts
turn them into absl flags (`define_flags`), parse the command line, and build one immutable
`Config` (`from_flags`), checking every value's range before anything is written. Nothing
under `libml/` reads absl flags.
"""

import dataclasses
import math
import os
from collections.abc import Callable
from typing import Any

from libml.data.names import NAME_PATTERN
from libml.data.streams import DEFAULT_SHUFFLE_BUFFER
from libml.errors import UserError
from libml.files import is_utf8
from libml.train import replicas


@dataclasses.dataclass(frozen=True)
class Setting:
    """One command-line setting: `--name` with its default, help and accepted values.

    `valid(value) -> bool` and `expect` (what valid values are, for the error message) check
    the range; `choices` makes it an enum. `in_name` settings name the run dir.
    """

    name: str
    default: Any
    help: str
    valid: Callable[[Any], bool] | None = None
    expect: str = ''
    choices: tuple[str, ...] | None = None
    in_name: bool = False

    def check(self, value):
        """UserError naming the flag when `value` is out of range."""
        if self.choices is not None and value not in self.choices:
            raise UserError(f'--{self.name}={value}: expected one of {", ".join(self.choices)}')
        if self.valid is not None and not self.valid(value):
            raise UserError(f'--{self.name}={value}: must be {self.expect}')


def hyper(name, default, help, valid=None, expect='', choices=None):
    """An algorithm's hyper-parameter: a `Setting` that names the run dir."""
    return Setting(name, default, help, valid, expect, choices, in_name=True)


def warmup_pos(what='the weight'):
    """The linear ramp-up of an unlabelled loss weight from 0 (maths.ramp) over this share of training."""
    return hyper('warmup_pos', 0.4, f'Share of training over which {what} ramps up from 0.', unit_interval, 'in [0, 1)')


def with_defaults(settings, **defaults):
    """`settings` with some defaults changed: an algorithm that shares another's hyper-parameters."""
    unknown = set(defaults) - {s.name for s in settings}
    assert not unknown, f'no such settings: {unknown}'
    return tuple(dataclasses.replace(s, default=defaults.get(s.name, s.default)) for s in settings)


def positive(v):
    return v > 0 and math.isfinite(v)


def non_negative(v):
    return v >= 0 and math.isfinite(v)


def unit_interval(v):
    """0 <= v < 1 (a decay or momentum)."""
    return 0 <= v < 1


def parse_int_list(text, flag, each=None):
    """'2,3,4' -> [2, 3, 4]; a UserError naming `flag` otherwise, or for a repeated value when `each` names them."""
    try:
        values = [int(v) for v in text.split(',') if v.strip()]
    except ValueError:
        raise UserError(f'--{flag}={text!r}: expected comma-separated integers such as 2,3,4') from None
    if not values:
        raise UserError(f'--{flag} is empty: expected comma-separated integers such as 2,3,4')
    if each and len(set(values)) != len(values):
        raise UserError(f'--{flag}={text} lists a {each} twice')
    return values


LOOP = (
    # data
    Setting('dataset', 'digits.1@50-250', f'Dataset {NAME_PATTERN} under $ML_DATA, e.g. cifar10.1@250-5000.'),
    Setting(
        'train_dir',
        './experiments',
        'Folder of the runs: <train_dir>/<dataset>/<Algorithm>_<settings>/.',
        is_utf8,
        'a UTF-8 path (TensorFlow writes files by UTF-8 names only)',
    ),
    Setting(
        'augment',
        'cifar10',
        'Online augmentation of training images: none, cifar10 (mirror + shift), svhn '
        '(shift only), stl10, color, cutout (mirror + shift + a grey square of half the side).',
        in_name=True,
    ),
    Setting('class_mapping', '', 'Class-name JSON; default $ML_DATA/<name>_class_mappings.json.'),
    Setting('nclass', 0, 'Number of classes; read from the data when 0 (if given, must agree).', non_negative, '>= 0'),
    Setting('img_size', 0, 'Image side; read from the data when 0 (if given, must agree).', non_negative, '>= 0'),
    Setting(
        'custom_dataset', False, 'Accepted for compatibility with the original commands; datasets are found by name.'
    ),
    Setting(
        'cache_mb',
        -1,
        'Decoded training images kept in memory up to this many MiB (labelled file first); '
        'larger files are streamed. -1 = half the memory available when the run first starts (kept on resume, '
        'so a resumed run reads its data in the same order).',
        lambda v: v >= -1,
        '-1 or >= 0',
    ),
    Setting(
        'shuffle_buffer',
        DEFAULT_SHUFFLE_BUFFER,
        'Records of a streamed training file shuffled together (and the most a resume reads again).',
        positive,
        '>= 1',
    ),
    # schedule, in thousands (1024) of labelled images
    Setting('train_kimg', 1 << 16, 'Length of training, in thousands (1024) of labelled images.', positive, '>= 1'),
    Setting('report_kimg', 64, 'Evaluate, write summaries and print a line every this many kimg.', positive, '>= 1'),
    Setting('save_kimg', 64, 'Save a checkpoint every this many kimg.', positive, '>= 1'),
    Setting('keep_ckpt', 50, 'How many of the newest checkpoints to keep.', positive, '>= 1'),
    Setting(
        'epochs',
        0,
        'If > 0, stop after this many REPORT PERIODS of --report_kimg (not passes over the data), '
        'counted from the start of the run.',
        non_negative,
        '>= 0',
    ),
    Setting(
        'batch',
        64,
        'Global batch: labelled images per step, split evenly over the replicas of --strategy.',
        positive,
        '>= 1',
        in_name=True,
    ),
    Setting(
        'uratio', 1, 'Unlabelled images per step = uratio x --batch (FixMatch: 7).', positive, '>= 1', in_name=True
    ),
    # optimiser
    Setting(
        'optimizer',
        'adam',
        'adam (TensorFlow defaults) or sgd (momentum --momentum, Nesterov).',
        choices=('adam', 'sgd'),
        in_name=True,
    ),
    Setting('momentum', 0.9, 'Momentum of --optimizer=sgd (Nesterov).', unit_interval, 'in [0, 1)'),
    Setting('lr', 0.002, 'Learning rate.', non_negative, '>= 0', in_name=True),
    Setting(
        'lr_decay',
        'constant',
        'constant, or cosine: lr * cos(7 pi k / 16 K) at image k of K.',
        choices=('constant', 'cosine'),
        in_name=True,
    ),
    Setting('wd', 0.02, 'Weight decay of conv and dense kernels (see --wd_mode).', non_negative, '>= 0', in_name=True),
    Setting(
        'wd_mode',
        'decoupled',
        'decoupled: kernels multiplied by (1 - wd * lr) after each step; l2: wd * 0.5 * sum(k^2) added to the loss.',
        choices=('decoupled', 'l2'),
        in_name=True,
    ),
    Setting(
        'ema',
        0.999,
        'Decay of the moving average of the weights used for evaluation.',
        unit_interval,
        'in [0, 1)',
        in_name=True,
    ),
    # model
    Setting(
        'arch',
        'resnet',
        'Model: resnet (Wide-ResNet-28-2 at the defaults), convnet or shake.',
        choices=('resnet', 'convnet', 'shake'),
        in_name=True,
    ),
    Setting('filters', 32, 'Width of the first stage.', positive, '>= 1', in_name=True),
    Setting('repeat', 4, 'Residual units per stage.', positive, '>= 1', in_name=True),
    Setting(
        'scales',
        0,
        'Number of stages (each halves the image side); 0 = log2(image side) - 2.',
        non_negative,
        '>= 0',
        in_name=True,
    ),
    Setting(
        'bn_momentum',
        0.999,
        'Momentum of the batch-norm moving statistics used for evaluation (short '
        'schedules need a smaller one, e.g. 0.99).',
        unit_interval,
        'in [0, 1)',
        in_name=True,
    ),
    Setting(
        'seed', 0, 'Seed of initialisation, data order, augmentation and MixUp.', non_negative, '>= 0', in_name=True
    ),
    # checkpoints, evaluation, inference
    Setting('load_checkpoint', '', 'Fine-tune: start from this checkpoint (all but the last dense layer).'),
    Setting('eval_ckpt', '', 'Evaluate this checkpoint (raw and EMA weights) and exit.'),
    Setting('perform_inference', False, 'Predict every image of --inference_dir with --inference_ckpt and exit.'),
    Setting('inference_dir', '', 'Folder of images to predict (searched recursively).'),
    Setting('inference_ckpt', '', 'Checkpoint, run dir or exported SavedModel used by --perform_inference.'),
    Setting(
        'inference_out',
        '',
        'Folder of <dataset>_pred.npy and .csv; default: predictions/ in the run dir of '
        '--inference_ckpt (beside a SavedModel).',
    ),
    Setting('overwrite', False, 'Allow --perform_inference to replace existing prediction files.'),
    Setting('eval_batch', 256, 'Batch size of evaluation and inference.', positive, '>= 1'),
    Setting(
        'outlier_sample',
        2000,
        'Outlier AUROC on the unlabelled images (outliers/auroc_unlabelled): at most this many '
        'training-unlabelled images whose class is known, in or outside the labelled classes, drawn once '
        'with a fixed seed (the same images at every report and in every run of the split); 0 = off. The '
        'other AUROC, outliers/auroc_test_unseen, takes the test images against $ML_DATA/<name>-unseen.tfrecord '
        '(test images of the other classes, filter_dataset.py writes it) when that file exists.',
        non_negative,
        '>= 0',
    ),
    # speed and scale
    Setting('xla', False, 'Compile the train step and evaluation with XLA (jit_compile); one device only.'),
    Setting(
        'strategy',
        'auto',
        'Data parallelism: none, mirrored (every GPU of this machine), multiworker '
        '(cluster from $TF_CONFIG), auto (mirrored if more than one GPU). --batch is the global batch.',
        choices=replicas.STRATEGIES,
    ),
    Setting(
        'mixed_precision',
        False,
        'float16 compute with loss scaling on GPU; bfloat16 on CPUs that have it, '
        'else float32. Variables stay float32.',
        in_name=True,
    ),
)

# Settings added after runs were first named: they join the run-dir name only when they differ from
# these defaults, so runs trained before them keep their folders (and resume).
NAME_ONLY_WHEN_CHANGED = {
    'uratio': 1,
    'optimizer': 'adam',
    'lr_decay': 'constant',
    'wd_mode': 'decoupled',
    'mixed_precision': False,  # a float32 run is never resumed in bfloat16/float16, nor the reverse
}


class Config:
    """Immutable settings of one run: `config.lr`, `config.hp.beta` (the algorithm's own)."""

    def __init__(self, values, hp=None):
        object.__setattr__(self, '_values', dict(values))
        object.__setattr__(self, 'hp', hp)

    def __getattr__(self, name):
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name, value):
        raise AttributeError(f'Config is immutable: use replace({name}=...)')

    def replace(self, **changes):
        """A copy with `changes` applied to the loop settings (not re-validated)."""
        unknown = set(changes) - set(self._values)
        if unknown:
            raise AttributeError(f'unknown settings {sorted(unknown)}')
        return Config({**self._values, **changes}, self.hp)

    def as_dict(self):
        """Every setting, the algorithm's included (for args.json)."""
        return {**self._values, **(self.hp.as_dict() if self.hp else {})}

    @property
    def total_images(self):
        """Images the run trains on: --train_kimg, shortened by --epochs report periods."""
        total = self.train_kimg << 10
        return min(total, self.epochs * (self.report_kimg << 10)) if self.epochs > 0 else total

    @property
    def training(self):
        return not self.eval_ckpt and not self.perform_inference


def loop_settings(algorithm):
    """The loop's settings with `algorithm`'s defaults applied."""
    return tuple(dataclasses.replace(s, default=algorithm.loop_defaults.get(s.name, s.default)) for s in LOOP)


def define_flags(algorithm, flag_values):
    """Defines the loop's and `algorithm`'s settings as absl flags in `flag_values`."""
    from absl import flags

    for setting in loop_settings(algorithm) + tuple(algorithm.settings):
        kind = type(setting.default)
        args = (setting.name, setting.default, setting.help)
        if setting.choices is not None:
            flags.DEFINE_enum(
                setting.name, setting.default, list(setting.choices), setting.help, flag_values=flag_values
            )
        elif kind is bool:
            flags.DEFINE_boolean(*args, flag_values=flag_values)
        elif kind is int:
            flags.DEFINE_integer(*args, flag_values=flag_values)
        elif kind is float:
            flags.DEFINE_float(*args, flag_values=flag_values)
        else:
            flags.DEFINE_string(*args, flag_values=flag_values)


def build(algorithm, **values):
    """A checked `Config` for `algorithm` from keyword values (defaults for the rest)."""
    loop = {s.name: values.pop(s.name, s.default) for s in loop_settings(algorithm)}
    own = {s.name: values.pop(s.name, s.default) for s in algorithm.settings}
    if values:
        raise UserError(f'unknown settings for {algorithm.name}: {", ".join(sorted(values))}')
    for setting in loop_settings(algorithm):
        setting.check(loop[setting.name])
    for setting in algorithm.settings:
        setting.check(own[setting.name])
    config = Config(loop, Config(own))
    if config.mixed_precision and algorithm.float32_only:
        raise UserError(f'--mixed_precision: {algorithm.float32_only}')
    algorithm.check(config)
    return config


def from_flags(algorithm, flag_values):
    """The `Config` of parsed absl `flag_values` (defined by `define_flags`)."""
    names = [s.name for s in LOOP] + [s.name for s in algorithm.settings]
    return build(algorithm, **{name: flag_values[name].value for name in names})


def run_dir(config, algorithm):
    """`<train_dir>/<dataset>/<Name>_<settings sorted by name>` (values as typed, e.g. lr0.002)."""
    named = {s.name for s in LOOP if s.in_name} | {s.name for s in algorithm.settings if s.in_name}
    values = config.as_dict()
    named = {k for k in named if k not in NAME_ONLY_WHEN_CHANGED or values[k] != NAME_ONLY_WHEN_CHANGED[k]}
    parts = [f'{key}{values[key]}' for key in sorted(named)]
    return os.path.join(config.train_dir, config.dataset, '_'.join([algorithm.name] + parts))
