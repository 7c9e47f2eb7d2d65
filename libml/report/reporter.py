"""The report of each period: EMA evaluation, TensorBoard summaries, run.json and one console line.

What TensorBoard shows of a run (tags written by `Reporter`):
- scalars every report (`scalars`), plus `summary/accuracy_test_median10` (and `_valid_`): the
  median of the last 10 reports' accuracies, the number a run is compared by;
- images: at every report `confusion_matrix/test` (the EMA model's test confusion matrix, its
  counts also as a Markdown table under the text tag `confusion_matrix/test_counts`); at the
  first report a process writes, `pictures/<name>` grids of one training batch
  (`Algorithm.pictures`: the augmented labelled images, each unlabelled view, the mixed batch);
- the HParams dashboard: the run's hyper-parameters (`hparams`), written once per run dir. No
  experiment config is written: TensorBoard then takes the union of every run's hyper-parameters
  (a config per run would make it show only one arbitrary run's, hiding the other algorithms'
  settings in a mixed sweep) and offers every scalar tag as a metric.
"""

import glob
import os
import time

from libml import config as config_lib
from libml.report import evaluation, events, metrics, pictures
from libml.train import run_folder

import numpy as np
import tensorflow as tf
from google.protobuf.message import DecodeError
from tensorboard.compat.proto import event_pb2
from tensorboard.plugins.hparams import api as hp
from tensorboard.plugins.hparams import metadata as hp_metadata

MEDIAN_COUNT = 10
OUTLIER_PREFIX = 'outliers/auroc_'  # + 'unlabelled' | 'test_unseen' (evaluation.outlier_aurocs)
# {scalar tag: the tag of the median of its last MEDIAN_COUNT reports}. Under summary/, so no class name can clash
# with them (per-class accuracies are accuracy_test/<class name>).
MEDIANS = {'accuracy_test': 'summary/accuracy_test_median10', 'accuracy_valid': 'summary/accuracy_valid_median10'}
CONFUSION_TAG = 'confusion_matrix/test'
CONFUSION_COUNTS_TAG = 'confusion_matrix/test_counts'
PICTURES_PREFIX = 'pictures/'


def scalars(results, stats, loss_names, class_names, rate, aurocs=None):
    """{TensorBoard tag: value} of one report.

    results: `evaluation.evaluate` output; stats: mean step statistics, each a number or a vector
    (one value per class: written as `<tag>/<class name>`, other lengths as `<tag>/<index>`);
    loss_names: the stats written under losses/ (the rest go under monitors/); rate: training img/s;
    aurocs: `evaluation.outlier_aurocs` output, written as outliers/auroc_<set>.
    """
    nclass = len(class_names)
    out = {f'accuracy_{name}': value for name, value in evaluation.accuracies(results).items()}
    for key, value in stats.items():
        tag = f'losses/{key}' if key in loss_names or key == 'overall' else f'monitors/{key}'
        if np.ndim(value) == 0:
            out[tag] = value
            continue
        names = class_names if len(value) == nclass else range(len(value))
        out.update({f'{tag}/{name}': float(v) for name, v in zip(names, value)})
    if 'valid' in results:
        labels, probs = results['valid'].labels, results['valid'].probs
        out['losses/val_loss'] = float(-np.mean(np.log(probs[np.arange(len(labels)), labels] + 1e-12)))
    out.update({OUTLIER_PREFIX + name: value for name, value in (aurocs or {}).items()})
    test_labels, test_probs = results['test'].labels, results['test'].probs
    predictions = test_probs.argmax(1)
    out.update(metrics.precision_recall_f1(test_labels, predictions, nclass))
    for name, value in zip(class_names, metrics.per_class_accuracy(test_labels, predictions, nclass)):
        if not np.isnan(value):
            out[f'accuracy_test/{name}'] = value
    out['monitors/img_per_sec'] = rate
    return out


def console_line(images, tags, stats, loss_names, rate):
    """`kimg   64  accuracy train 98.0  valid 90.4  test 91.2  [auroc unlabelled 0.81 ...]  xe 0.1234 ... 512 img/s`."""
    losses = ' '.join(f'{k} {v:.4f}' for k, v in stats.items() if k in loss_names or k == 'overall')
    aurocs = ' '.join(f'{k[len(OUTLIER_PREFIX) :]} {v:.3f}' for k, v in tags.items() if k.startswith(OUTLIER_PREFIX))
    return (
        f'kimg {images >> 10:5d}  accuracy train {tags["accuracy_train_labeled"]:5.1f}  '
        f'valid {tags.get("accuracy_valid", float("nan")):5.1f}  test {tags["accuracy_test"]:5.1f}  '
        + (f'auroc {aurocs}  ' if aurocs else '')
        + f'{losses}  {rate:.0f} img/s'
    )


def hparams(config, algorithm):
    """{name: bool | int | float | str}: what the HParams dashboard compares runs by.

    Every setting that can name the run dir (the loop's and the algorithm's hyper-parameters,
    changed or not), the dataset, the length of training, and 'algorithm' (its name).
    """
    names = {s.name for s in config_lib.LOOP + tuple(algorithm.settings) if s.in_name} | {'dataset', 'train_kimg'}
    values = config.as_dict()
    out = {name: values[name] for name in sorted(names) if isinstance(values.get(name), (bool, int, float, str))}
    return dict(out, algorithm=algorithm.name)


def past_events(folder, tags=tuple(MEDIANS)):
    """What earlier sessions of a run dir wrote: ({tag: {step: value}} of scalar `tags`, hparams written?).

    Reads every events file of `folder`; a truncated file (a killed run) counts up to its last
    whole record. A later write for the same step replaces an earlier one.
    """
    values, hparams_written = {tag: {} for tag in tags}, False
    for path in sorted(glob.glob(os.path.join(folder, 'events*'))):
        try:
            for raw in tf.data.TFRecordDataset(path).as_numpy_iterator():
                event = event_pb2.Event.FromString(raw)
                for value in event.summary.value:
                    if value.tag == hp_metadata.SESSION_START_INFO_TAG:
                        hparams_written = True
                    elif value.tag in values:
                        scalar = tf.make_ndarray(value.tensor) if value.HasField('tensor') else value.simple_value
                        values[value.tag][event.step] = float(scalar)
        except (tf.errors.OpError, DecodeError):
            continue
    return values, hparams_written


def training_batches(trainer, images):
    """One global batch of each training stream at image `images`: (labelled, unlabelled or None).

    Drawn from fresh pipelines built like the trainer's (`Trainer.train_streams`), so the
    training streams do not move: they are the batches of the step at image `images`.
    """
    c = trainer.config
    labelled = next(iter(trainer.dataset.train_labelled(c.batch, c.seed, images)))
    views = trainer.algorithm.views
    if not views:
        return labelled, None
    unlabelled = trainer.dataset.train_unlabelled(c.batch * c.uratio, views, c.seed, images * c.uratio)
    return labelled, next(iter(unlabelled))


class Reporter:
    """Evaluates the EMA model after each period and writes what a user watches (chief only).

    `pictures=False` leaves out every image summary (the confusion matrix and the batches).
    """

    def __init__(self, trainer, run_dir, pictures=True):
        self.trainer, self.run_dir, self.pictures = trainer, run_dir, pictures
        folder = run_folder.ckpt_dir(run_dir)
        self.history, hparams_written = past_events(folder)
        self.writer = tf.summary.create_file_writer(folder)
        self.predictor = evaluation.Predictor(trainer.config.xla, trainer.algorithm.outlier_score)
        self.batches_due = pictures
        if not hparams_written:
            with self.writer.as_default():
                hp.hparams(hparams(trainer.config, trainer.algorithm))
            self.writer.flush()

    def report(self, images, stats, rate):
        """Evaluates, writes the summaries and run.json, prints the console line; returns the tags."""
        trainer = self.trainer
        c = trainer.config
        results = evaluation.evaluate(self.predictor, trainer.ema_model, trainer.dataset, c.eval_batch)
        aurocs = evaluation.outlier_aurocs(
            self.predictor, trainer.ema_model, trainer.dataset, c.eval_batch, c.outlier_sample, results['test']
        )
        loss_names = trainer.algorithm.loss_names
        tags = scalars(results, stats, loss_names, trainer.dataset.class_names, rate, aurocs)
        tags[events.CPU_TAG] = time.process_time()
        for tag, median_tag in MEDIANS.items():
            if tag in tags:
                self.history[tag][images] = tags[tag]
                tags[median_tag] = metrics.median_of_recent(self.history[tag], images, MEDIAN_COUNT)
        with self.writer.as_default(step=images):
            for tag, value in tags.items():
                tf.summary.scalar(tag, value)
            if self.pictures:
                self._write_confusion(images, results['test'], tags['accuracy_test'])
            if self.batches_due:
                self._write_batches(images)
                self.batches_due = False
        self.writer.flush()
        run_folder.write_status(
            self.run_dir,
            status='training',
            images=images,
            accuracy={k[len('accuracy_') :]: v for k, v in tags.items() if k.startswith('accuracy_') and '/' not in k},
        )
        print(console_line(images, tags, stats, loss_names, rate), flush=True)
        return tags

    def _write_confusion(self, images, test, accuracy):
        labels, probs = test.labels, test.probs
        names = self.trainer.dataset.class_names
        matrix = pictures.confusion_matrix(labels, probs.argmax(1), len(names))
        title = f'Test, EMA model, {images >> 10} kimg: accuracy {accuracy:.1f}% of {len(labels)}'
        tf.summary.image(
            CONFUSION_TAG,
            pictures.confusion_figure(matrix, names, title)[None],
            description='Test confusion matrix of the EMA model: rows = true class, columns = '
            'predicted class, counts in the cells, colour = share of the row.',
        )
        tf.summary.text(
            CONFUSION_COUNTS_TAG,
            pictures.confusion_table(matrix, names),
            description='Test confusion matrix counts: rows = true class, columns = predicted class.',
        )

    def _write_batches(self, images):
        trainer = self.trainer
        labelled, unlabelled = training_batches(trainer, images)
        shown = trainer.algorithm.pictures(trainer.step_context(), labelled, unlabelled)
        for name, batch in shown.items():
            batch = np.asarray(batch)
            tf.summary.image(
                PICTURES_PREFIX + name,
                pictures.grid(batch)[None],
                description=f'{name}: the first {min(len(batch), 64)} of {len(batch)} images of the '
                f'training step at image {images} (written once per training session).',
            )

    def close(self):
        self.writer.close()
