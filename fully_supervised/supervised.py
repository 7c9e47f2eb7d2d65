"""What both supervised baselines share: their dataset flags and their entry point."""

import os

import tensorflow as tf
from absl import app, flags

from libml import data, train
from libml.utils import UserError, data_dir

FLAGS = flags.FLAGS

flags.DEFINE_string('train_record', '', 'With --dataset=<name>-<valid>: the training TFRecord (bare names are '
                    'looked up in $ML_DATA). Its first <valid> labelled records are held out for validation.')
flags.DEFINE_string('test_record', '', 'With --dataset=<name>-<valid>: the test TFRecord (bare names are looked '
                    'up in $ML_DATA).')


def _resolve(path):
    return path if os.path.isabs(path) or os.path.exists(path) else os.path.join(data_dir(), path)


def labelled_loss_inputs(trainer, labelled):
    """(images [B, H, W, C], one-hot targets [B, K]) of a labelled batch."""
    x, labels = labelled
    return x, tf.one_hot(labels, trainer.dataset.nclass)


def load_dataset():
    """The baseline's data: an SSL split's labelled file, or --train_record/--test_record."""
    parsed = data.parse_dataset_name(FLAGS.dataset, allow_plain=True)
    common = dict(augment=FLAGS.augment, nclass=FLAGS.nclass, img_size=FLAGS.img_size)
    if parsed.seed is not None:
        return data.DataSet.from_name(FLAGS.dataset, class_mapping=FLAGS.class_mapping, **common)
    if not FLAGS.train_record or not FLAGS.test_record:
        raise UserError(f'--dataset={FLAGS.dataset} names no split: pass --train_record=FILE and '
                        '--test_record=FILE, or use a split name such as digits.1@50-250')
    mapping = FLAGS.class_mapping or data.class_mapping_path(parsed.name)
    return data.DataSet.from_records(str(parsed), _resolve(FLAGS.train_record), _resolve(FLAGS.test_record),
                                     parsed.valid, class_mapping=mapping, **common)


def main(trainer_cls):
    """An absl main that trains, evaluates or infers with `trainer_cls`."""

    def run(argv):
        if len(argv) > 1:
            raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
        train.run(trainer_cls, load_dataset)

    return run
