"""One run of an algorithm from its `Config`: train, evaluate a checkpoint, or infer a folder.

These are what the entry scripts call after parsing their flags, and what tests and the
benchmark call in-process.
"""

import contextlib
import os
import shutil

from libml import config as config_lib
from libml import signals
from libml.data import overlap
from libml.data.streams import DEFAULT_CACHE_MB
from libml.errors import UserError
from libml.report import evaluation
from libml.report.reporter import Reporter
from libml.serve import export, inference
from libml.train import checkpoints, loop, replicas, run_folder


def make_trainer(config, algorithm, strategy=None):
    """The `Trainer` of `config` (the strategy is created before any data is read, as multi-worker needs)."""
    strategy = strategy or replicas.get(config.strategy if config.training else 'none')
    return loop.Trainer(config, algorithm, algorithm.load_dataset(config), strategy)


def pinned_cache(config, run_dir):
    """`config` with --cache_mb=-1 (auto) replaced by the value the run first used (the data order depends on it)."""
    if config.cache_mb >= 0:
        return config
    status = run_folder.read_status(run_dir) if os.path.exists(os.path.join(run_dir, 'run.json')) else {}
    return config.replace(cache_mb=int(status.get('cache_mb', DEFAULT_CACHE_MB)))


def train(config, algorithm, strategy=None):
    """Trains (resuming from the run dir's newest readable checkpoint); returns the `Trainer`.

    A run refused or failing before it trains (other data than its checkpoints', an unreadable
    --load_checkpoint) leaves no new folder behind; once it trains, run.json records how it
    ended: done, failed (with the error) or stopped (by which signal).
    """
    run_dir = config_lib.run_dir(config, algorithm)
    config = pinned_cache(config, run_dir)
    trainer = make_trainer(config, algorithm, strategy)
    chief_dir = run_dir if trainer.chief else None
    created = _first_missing(run_dir) if trainer.chief else None
    lock = run_folder.Lock(run_dir) if trainer.chief else None
    try:
        with _removed_on_failure(created, run_dir):
            start = _start(trainer, run_dir)
        if start >= config.total_images:
            if trainer.chief:
                print(f'{run_dir}: already trained ({start >> 10} kimg); nothing to do', flush=True)
                run_folder.write_status(run_dir, status='done', images=start)
            return trainer
        if trainer.chief:
            _print_header(trainer, algorithm, start, run_dir)
            run_folder.write_status(run_dir, status='training', pid=os.getpid(), cache_mb=config.cache_mb)
        with _status_on_exit(chief_dir):
            _train_from(trainer, start, run_dir)
            if trainer.chief:
                run_folder.write_status(run_dir, status='done', images=int(trainer.images_seen.numpy()))
        return trainer
    finally:
        if lock:
            lock.release()


def _start(trainer, run_dir):
    """Checks the run's data, writes its settings, resumes or fine-tunes; returns the image to start from."""
    config = trainer.config
    if trainer.chief:
        _check_data(trainer.dataset, run_dir)
    trained = run_folder.trained_length(run_dir) if trainer.chief else None  # before write_args replaces it
    if trainer.chief:
        os.makedirs(run_folder.ckpt_dir(run_dir), exist_ok=True)
        run_folder.write_args(run_dir, config)
    start = run_folder.resume(trainer, run_dir)
    if start and trained not in (None, config.train_kimg):
        print(
            f'warning: {run_dir} was trained for --train_kimg={trained}, now {config.train_kimg}: '
            'length-dependent schedules (learning-rate decay, warm-up ramps, TSA) change from here; '
            'delete the folder to train the new length from the start',
            flush=True,
        )
    if not start and config.load_checkpoint:
        run_folder.fine_tune(trainer, config.load_checkpoint)
    return replicas.common_start(trainer.strategy, trainer.images_seen, config.train_dir)


def _check_data(dataset, run_dir):
    """Refuses to resume on other data than the run's checkpoints were trained on; records the data.

    Warns when training or validation images repeat test images (counted at the run's start only).
    """
    recorded, fingerprint = run_folder.read_data(run_dir), dataset.fingerprint()
    run_folder.check_same_data(run_dir, recorded, fingerprint)
    repeats = recorded.get('test_repeats') if not run_folder.data_change(recorded, fingerprint) else None
    if repeats is None:
        repeats = overlap.repeats_of_test(dataset.parts())
    warning = overlap.repeats_warning(repeats, dataset.test_file)
    if warning:
        print(warning, flush=True)
    run_folder.record_data(run_dir, fingerprint, class_names=dataset.class_names, test_repeats=repeats)


def _train_from(trainer, start, run_dir):
    """Trains from image `start` to the end, saving and reporting (the chief); NaN/Inf is a UserError."""
    config = trainer.config
    reporter = Reporter(trainer, run_dir) if trainer.chief else None

    def save(images):
        directory = replicas.save_dir(trainer.strategy, run_folder.ckpt_dir(run_dir))
        checkpoints.save(trainer.checkpoint, directory, images, config.keep_ckpt)
        replicas.discard(trainer.strategy, directory)

    try:
        trainer.train(start, reporter, save)
    except loop.NonFiniteLoss as e:
        found = checkpoints.list_checkpoints(run_folder.ckpt_dir(run_dir))
        last = found[-1][1] if found else 'none (nothing was saved yet)'
        raise UserError(
            f'the training loss became NaN/Inf near image {e.args[0]}: stopped. The last good '
            f'checkpoint is {last}. Lower --lr (now {config.lr}) or check the data and the '
            "algorithm's settings."
        ) from None
    finally:
        if reporter:
            reporter.close()


def _first_missing(path):
    """The outermost folder of `path` that does not exist yet (None when `path` exists)."""
    missing = None
    while path and not os.path.exists(path):
        missing, path = path, os.path.dirname(path)
    return missing


@contextlib.contextmanager
def _removed_on_failure(created, run_dir):
    """Removes `run_dir` and the empty folders up to `created` (made for it) when the block fails."""
    try:
        yield
    except BaseException:
        if created:
            shutil.rmtree(run_dir, ignore_errors=True)
            folder = os.path.dirname(run_dir)
            while len(folder) >= len(created) and _removed_if_empty(folder):
                folder = os.path.dirname(folder)
        raise


def _removed_if_empty(folder):
    try:
        os.rmdir(folder)
    except OSError:
        return False
    return True


@contextlib.contextmanager
def _status_on_exit(run_dir):
    """Records in `run_dir`/run.json how the block ended when it ends by an exception or a signal."""
    try:
        yield
    except BaseException as e:
        if run_dir:
            with signals.held():
                run_folder.write_status(run_dir, status=signals.outcome(e))
        raise


def _print_header(trainer, algorithm, start, run_dir):
    dataset, c = trainer.dataset, trainer.config
    counts = f'{len(dataset.train_labels)} labelled training images'
    if trainer.algorithm.views:
        counts += f', {dataset.unlabel_count} unlabelled'
    h, w, ch = dataset.shape
    print(
        f'Training {algorithm.name} on {dataset.name} ({dataset.nclass} classes, {h}x{w}x{ch}, {counts}) '
        f'from {start >> 10} to {c.total_images >> 10} kimg on {trainer.replicas} replica(s)\nRun dir: {run_dir}',
        flush=True,
    )


def evaluate(config, algorithm):
    """`--eval_ckpt`: raw and EMA accuracies of a checkpoint (see evaluation.eval_checkpoint)."""
    trainer = make_trainer(config, algorithm)
    return evaluation.eval_checkpoint(trainer, checkpoints.normalise(config.eval_ckpt), config.eval_batch)


def infer(config, algorithm):
    """`--perform_inference`: predictions of a checkpoint's EMA model (or a SavedModel) for a folder."""
    if not config.inference_dir or not config.inference_ckpt:
        raise UserError('--perform_inference needs --inference_dir=FOLDER and --inference_ckpt=CHECKPOINT')
    if export.is_saved_model(config.inference_ckpt):  # scripts/export.py's output: no dataset needed
        served = export.load_serving(config.inference_ckpt)
        out = config.inference_out or inference.default_out(config.inference_ckpt.rstrip('/'))
        return inference.infer(
            served.model_range,
            served.shape,
            served.class_names,
            config.inference_dir,
            os.path.join(out, f'{config.dataset}_pred'),
            config.eval_batch,
            config.overwrite,
        )
    trainer = make_trainer(config, algorithm)
    path = checkpoints.normalise(config.inference_ckpt)
    trainer.restore(path, 'model')
    predict = evaluation.Predictor(config.xla, algorithm.outlier_score).function(trainer.ema_model)
    if not trainer.heads:  # the outlier score is an output of models with open-set heads only
        predict = lambda x, predict=predict: {'probabilities': predict(x)['probabilities']}
    out = config.inference_out or inference.default_out(path)
    stem = os.path.join(out, f'{trainer.dataset.name}_pred')
    return inference.infer(
        predict,
        trainer.dataset.shape,
        trainer.dataset.class_names,
        config.inference_dir,
        stem,
        config.eval_batch,
        config.overwrite,
    )


# Settings a checkpoint's model and data depend on: read from its run's args.json unless given.
RUN_SETTINGS = ('dataset', 'arch', 'filters', 'repeat', 'scales', 'bn_momentum')


def with_settings_of_run(config, explicit=()):
    """For --eval_ckpt / --perform_inference: RUN_SETTINGS from the checkpoint's run (args/args.json).

    Settings named in `explicit` (typed on the command line) win. Returns the new `Config`.
    """
    path = config.eval_ckpt or (config.inference_ckpt if config.perform_inference else '')
    if not path or not os.path.exists(os.path.dirname(path.rstrip('/')) or '.'):
        return config
    run_dir = run_folder.holding(path)
    saved = run_folder.read_args(run_dir)
    changes = {k: saved[k] for k in RUN_SETTINGS if k in saved and k not in explicit and saved[k] != getattr(config, k)}
    if changes:
        print(f'Settings of {run_dir}: ' + ' '.join(f'--{k}={v}' for k, v in sorted(changes.items())), flush=True)
    return config.replace(**changes)


def dispatch(config, algorithm):
    """Evaluates, infers or trains, as the settings ask."""
    if config.eval_ckpt:
        return evaluate(config, algorithm)
    if config.perform_inference:
        return infer(config, algorithm)
    return train(config, algorithm)
