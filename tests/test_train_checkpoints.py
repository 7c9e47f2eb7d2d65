"""Checkpoint files: names, and a checkpoint of another model (libml/train/checkpoints.py)."""

from conftest import TINY_TRAIN, run_cli
from plain import make_trainer


def test_a_batch_that_does_not_divide_1024_names_checkpoints_by_the_images_they_hold(digits):
    trainer = make_trainer(batch=48, train_kimg=2, report_kimg=1, save_kimg=1)
    saved, reported = [], []

    class Record:
        def report(self, images, stats, rate):
            reported.append(images)

    trainer.train(0, Record(), saved.append)
    assert saved == reported == [1056, 2064]  # 22 and 43 steps of 48: the first step at or past 1024 and 2048
    assert int(trainer.images_seen.numpy()) == 2064


def test_checkpoint_from_another_architecture_is_a_clear_error(trained, digits, tmp_path):
    common = ['realmix.py', '--dataset=digits.1@50-250', f'--train_dir={tmp_path}'] + TINY_TRAIN
    run_dir = trained[1]
    proc = run_cli(
        common + ['--filters=16', f'--eval_ckpt={run_dir}/tf/model.ckpt-0000001024'], ml_data=digits, check=False
    )
    assert proc.returncode == 1 and 'Traceback' not in proc.stderr
    [line] = [x for x in proc.stderr.splitlines() if x.startswith('error:')]
    assert 'does not fit' in line
