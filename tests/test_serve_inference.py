"""--perform_inference: folder predictions against --eval_ckpt (libml/serve/inference.py)."""

import os
import re

from libml import files
from libml.serve import inference

import numpy as np
import pytest
import tensorflow as tf
from conftest import TINY_TRAIN, run_cli
from guards import png
from PIL import Image
from test_train_run import export_test_images


def test_inference_matches_eval_ckpt_accuracy(trained, digits, tmp_path):
    common = ['realmix.py', '--dataset=digits.1@50-250', f'--train_dir={tmp_path}'] + TINY_TRAIN
    run_dir = trained[1]
    ckpt = f'{run_dir}/tf/model.ckpt-0000002048'
    paths = export_test_images(digits, tmp_path / 'images')
    out_dir = tmp_path / 'pred'
    out_dir.mkdir()
    inferred = run_cli(
        common
        + [
            '--perform_inference',
            f'--inference_dir={tmp_path / "images"}',
            f'--inference_ckpt={ckpt}',
            f'--inference_out={out_dir}',
        ],
        ml_data=digits,
    ).stdout
    evaluated = run_cli(common + [f'--eval_ckpt={ckpt}'], ml_data=digits).stdout
    inference_acc = float(re.search(r'Inference accuracy: ([\d.]+)%', inferred).group(1))
    ema_test_acc = float(re.search(r'ema .*test +([\d.]+)', evaluated).group(1))
    assert inference_acc == pytest.approx(ema_test_acc, abs=0.01)
    predicted = np.load(out_dir / 'digits.1@50-250_pred.npy')
    rows = open(out_dir / 'digits.1@50-250_pred.csv').read().splitlines()
    assert rows[0] == 'path,class,confidence' and len(rows) == len(paths) + 1 == len(predicted) + 1
    assert [r.split(',')[0].strip('"') for r in rows[1:]] == sorted(paths)
    again = run_cli(
        common
        + [
            '--perform_inference',
            f'--inference_dir={tmp_path / "images"}',
            f'--inference_ckpt={ckpt}',
            f'--inference_out={out_dir}',
        ],
        ml_data=digits,
        check=False,
    )
    assert again.returncode == 1 and 'already exists' in again.stderr


def test_grayscale_inference_resizes_rgb_images(trained, digits, tmp_path):
    common = ['realmix.py', '--dataset=digits.1@50-250', f'--train_dir={tmp_path}'] + TINY_TRAIN
    run_dir = trained[1]
    folder = tmp_path / 'photos'
    (folder / '3').mkdir(parents=True)
    Image.new('RGB', (40, 30), (200, 10, 10)).save(folder / '3' / 'a.jpg')
    out = run_cli(
        common
        + [
            '--perform_inference',
            f'--inference_dir={folder}',
            f'--inference_ckpt={run_dir}/tf',
            f'--inference_out={tmp_path}',
        ],
        ml_data=digits,
    )
    assert 'Inference accuracy' in out.stdout
    assert np.load(tmp_path / 'digits.1@50-250_pred.npy').shape == (1,)


def test_predictions_keep_file_names_byte_for_byte_and_never_start_a_formula(tmp_path):
    folder = tmp_path / 'inference'
    name = os.fsdecode(b'caf\xe9.png')  # not UTF-8
    png(folder / '=cmd' / name, 100)
    png(folder / 'b' / '1.png', 200)
    brightness = lambda x: {'probabilities': tf.stack([tf.reduce_mean(x, [1, 2, 3]), -tf.reduce_mean(x, [1, 2, 3])], 1)}
    inference.infer(brightness, (8, 8, 1), ['=cmd', '-1'], str(folder), str(tmp_path / 'out' / 'p'), 4, False)
    assert np.load(tmp_path / 'out' / 'p.npy').tolist() == [1, 0]  # the darker image first ('=' sorts before 'b')
    rows = (tmp_path / 'out' / 'p.csv').read_bytes().splitlines()
    assert rows[1].startswith(os.fsencode(str(folder)) + b'/=cmd/caf\xe9.png,-1,')  # the name as on disk; -1 a number
    assert rows[2].startswith(os.fsencode(str(folder)) + b"/b/1.png,'=cmd,")  # a formula-like name quoted
    assert files.csv_cell('+0.5') == '+0.5' and files.csv_cell('@SUM(A1)') == "'@SUM(A1)"
