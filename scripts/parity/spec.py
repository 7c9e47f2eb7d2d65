"""What a parity cell is: one algorithm, one split seed, one schedule, trained by one side (USB or the project).

Pure Python (no TensorFlow, no torch): both venvs read it. Every algorithm's recipe is the project's
own (its flags' defaults, and table d's settings for Fashion-MNIST); `usb_args` says the same recipe
in USB's terms (semilearn 0.3.2's argument names, set by scripts/parity/usb_train.py).
"""

import dataclasses
import os

SIDES = ('usb', 'project')


def usb_environment():
    """The environment of USB's processes: OpenMP threads that sleep rather than spin while they wait.

    torch's OpenMP threads spin by default; on a machine whose cores other processes share, that made
    USB's step 30 times slower here (0.31 s instead of 0.009 s, WRN-16-2 on 32 16x16 images, load 6
    on 2 cores). OMP_WAIT_POLICY=PASSIVE unless the caller sets it.
    """
    return dict(os.environ, OMP_WAIT_POLICY=os.environ.get('OMP_WAIT_POLICY', 'PASSIVE'))


# The project's recipes (libml/config.py LOOP defaults; fixmatch.py's loop_defaults).
ADAM = dict(optim='AdamW', lr=0.002, weight_decay=0.02, momentum=0.9, cosine=False)  # Adam, decoupled decay
SGD = dict(optim='SGD', lr=0.03, weight_decay=0.0005, momentum=0.9, cosine=True)  # Nesterov, L2 decay, cosine


@dataclasses.dataclass(frozen=True)
class Algorithm:
    """One algorithm both codebases have.

    name: the harness's name (USB's registry name); method: the project's (the label of its `Method`
    in libml/algorithm.py's registry); flags: the project's flags beyond the schedule and the
    method's own; usb: USB's own hyper-parameters (its argument names); recipe: optimiser settings
    (ADAM or SGD); uratio: unlabelled images per labelled one; state: what the algorithm carries across
    steps, ((its name in the project's `Algorithm.initial_state`, USB's hook, that hook's attribute), ...).
    """

    name: str
    method: str
    flags: tuple
    usb: dict
    recipe: dict
    uratio: int = 1
    state: tuple = ()


ALGORITHMS = {
    a.name: a
    for a in (
        # USB has no label smoothing: the project's --smoothing (0.001 in its tables) is set to 0.
        Algorithm('fullysupervised', 'Supervised', ('--smoothing=0',), {}, ADAM),
        Algorithm('pimodel', 'Pi-Model', (), dict(ulb_loss_ratio=10.0, unsup_warm_up=0.4), ADAM),
        Algorithm('meanteacher', 'Mean Teacher', (), dict(ulb_loss_ratio=50.0, unsup_warm_up=0.4), ADAM),
        Algorithm(
            'vat',
            'VAT',
            (),
            dict(ulb_loss_ratio=0.3, vat_eps=6.0, ent_loss_ratio=0.06, unsup_warm_up=0.4, vat_embed=False),
            ADAM,
        ),
        Algorithm('pseudolabel', 'Pseudo-Label', (), dict(ulb_loss_ratio=1.0, p_cutoff=0.95, unsup_warm_up=0.4), ADAM),
        # Table d's MixMatch: w_match 25 (FASHION_W_MATCH), warm-up over 32 kimg, Beta(0.75), T 0.5, 2 views.
        Algorithm(
            'mixmatch',
            'MixMatch',
            ('--w_match=25',),
            dict(ulb_loss_ratio=25.0, T=0.5, mixup_alpha=0.75, mixup_manifold=False, warmup_kimg=32),
            ADAM,
        ),
        Algorithm(
            'fixmatch', 'FixMatch', (), dict(ulb_loss_ratio=1.0, p_cutoff=0.95, T=0.5, hard_label=True), SGD, uratio=7
        ),
        # FixMatch's successors: the project's defaults in USB's names (semilearn/algorithms/<name>/<name>.py
        # get_argument); T is USB's sharpening of the weak view, unused with hard labels.
        Algorithm(
            'flexmatch',
            'FlexMatch',
            (),
            dict(ulb_loss_ratio=1.0, p_cutoff=0.95, T=0.5, hard_label=True, thresh_warmup=True),
            SGD,
            uratio=7,
            state=(('selected', 'MaskingHook', 'selected_label'),),
        ),
        Algorithm(
            'freematch',
            'FreeMatch',
            (),
            dict(ulb_loss_ratio=1.0, ent_loss_ratio=0.001, ema_p=0.999, T=0.5, hard_label=True)
            | dict(use_quantile=False, clip_thresh=False),
            SGD,
            uratio=7,
            state=(
                ('tau', 'MaskingHook', 'time_p'),
                ('p', 'MaskingHook', 'p_model'),
                ('hist', 'MaskingHook', 'label_hist'),
            ),
        ),
        Algorithm(
            'softmatch',
            'SoftMatch',
            (),
            dict(ulb_loss_ratio=1.0, ema_p=0.999, n_sigma=2, T=0.5, hard_label=True)
            | dict(dist_align=True, dist_uniform=True, per_class=False),
            SGD,
            uratio=7,
            state=(
                ('pbar', 'DistAlignHook', 'p_model'),
                ('mu', 'MaskingHook', 'prob_max_mu_t'),
                ('var', 'MaskingHook', 'prob_max_var_t'),
            ),
        ),
        Algorithm(
            'uda', 'UDA', (), dict(ulb_loss_ratio=1.0, p_cutoff=0.8, T=0.4, tsa_schedule='linear'), SGD, uratio=7
        ),
    )
}


@dataclasses.dataclass(frozen=True)
class Schedule:
    """Model, data and length shared by every cell of a table (the project's flag names and units).

    kimg, report_kimg: thousands (1024) of labelled images; scales 0 = log2(image side) - 2.
    """

    kimg: int = 64
    report_kimg: int = 2
    batch: int = 64
    filters: int = 16
    repeat: int = 2
    scales: int = 0
    ema: float = 0.99
    bn_momentum: float = 0.99
    augment: str = 'cifar10'

    def __post_init__(self):
        if (self.kimg << 10) % self.batch or (self.report_kimg << 10) % self.batch:
            raise ValueError(f'kimg and report_kimg must be whole numbers of batches of {self.batch}')

    @property
    def steps(self):
        return (self.kimg << 10) // self.batch

    @property
    def report_steps(self):
        return (self.report_kimg << 10) // self.batch

    def project_flags(self, algorithm):
        """The project trainer's flags for `algorithm` on this schedule (float32: USB trains in float32 on a CPU)."""
        return [
            f'--train_kimg={self.kimg}',
            f'--report_kimg={self.report_kimg}',
            f'--save_kimg={self.report_kimg}',
            f'--batch={self.batch}',
            f'--uratio={algorithm.uratio}',
            f'--filters={self.filters}',
            f'--repeat={self.repeat}',
            f'--scales={self.scales}',
            f'--ema={self.ema}',
            f'--bn_momentum={self.bn_momentum}',
            f'--augment={self.augment}',
            *algorithm.flags,
        ]


# Table d (Fashion-MNIST, 250 labels, 500 validation images): its model and data; the length is the harness's.
TABLE_D = Schedule()
# Seconds per cell: checks the pipeline, not the numbers (the project's QUICK_SCHEDULE sizes).
TINY = Schedule(kimg=1, report_kimg=1, batch=16, filters=8, repeat=1, augment='svhn')


@dataclasses.dataclass(frozen=True)
class Cell:
    """One training run: `side` trains `algorithm` on split `dataset` (a project dataset name) with `seed`."""

    side: str
    algorithm: str
    dataset: str
    seed: int
    schedule: Schedule

    @property
    def key(self):
        """Unique name of the cell in the results file."""
        s = self.schedule
        shape = f'f{s.filters}r{s.repeat}s{s.scales}b{s.batch}'
        return f'{self.side}/{self.algorithm}/{self.dataset}/seed{self.seed}/{shape}_{s.kimg}kimg'
