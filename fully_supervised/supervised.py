"""What both supervised baselines share: their data (a split's labelled file, or a whole record file)."""

import os

from libml import algorithm
from libml.config import Setting
from libml.data.dataset import DataSet
from libml.data.names import data_dir, mapping_file, parse_dataset_name
from libml.errors import UserError


def _resolve(path):
    return path if os.path.isabs(path) or os.path.exists(path) else os.path.join(data_dir(), path)


class Supervised(algorithm.Algorithm):
    """Labelled images only. Records labelled -1 (unlabelled) are never trained on."""

    settings = (
        Setting(
            'train_record',
            '',
            'With --dataset=<name>-<valid>: the training TFRecord (bare names are looked up '
            'in $ML_DATA). <valid> of its labelled records, balanced over the classes, are held out.',
        ),
        Setting(
            'test_record',
            '',
            'With --dataset=<name>-<valid>: the test TFRecord (bare names are looked up in $ML_DATA).',
        ),
    )

    @staticmethod
    def load_dataset(config):
        """An SSL split's labelled file, or --train_record/--test_record for `<name>-<valid>`."""
        parsed = parse_dataset_name(config.dataset, allow_plain=True)
        options = algorithm.dataset_options(config)
        if parsed.seed is not None:
            return DataSet.from_name(config.dataset, **options)
        if not config.hp.train_record or not config.hp.test_record:
            raise UserError(
                f'--dataset={config.dataset} names no split: pass --train_record=FILE and '
                '--test_record=FILE, or use a split name such as digits.1@50-250'
            )
        options['class_mapping'] = mapping_file(config.class_mapping, parsed.name)
        return DataSet.from_records(
            str(parsed), _resolve(config.hp.train_record), _resolve(config.hp.test_record), parsed.valid, **options
        )
