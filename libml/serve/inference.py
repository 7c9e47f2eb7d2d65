"""`--perform_inference`: predict every image of a folder with a checkpoint's EMA weights.

Writes `<dataset>_pred.npy` (predicted class ids, sorted path order) and `<dataset>_pred.csv`
(path, class name, confidence), and prints the accuracy when the true classes can be read from
folder or file names. A model with open-set heads (OpenMatch, IOMatch) also gives each image's
outlier score: an `outlier_score` column in the CSV and `<dataset>_pred_outlier.npy`.
"""

import os

from libml import progress
from libml.data import image_files
from libml.data.dataset import to_model_range
from libml.errors import UserError
from libml.files import atomic_outputs, write_csv
from libml.report import metrics
from libml.train import run_folder

import numpy as np
import tensorflow as tf


def predict_files(predict, files, shape, batch):
    """{'probabilities': [N, K], and 'outlier_score': [N] if `predict` gives it} of image `files`.

    Images are loaded at the model's `shape` (H, W, C); predict: images [n, H, W, C] in [-1, 1] ->
    {'probabilities': [n, K], ...} (tensors or numpy).
    """
    height, _, channels = shape
    out = {}
    for i in progress.bar(range(0, len(files), batch), desc='inference', unit='batch'):
        pixels = np.stack([image_files.load_image(f, size=height, channels=channels) for f in files[i : i + batch]])
        for key, value in predict(to_model_range(tf.image.convert_image_dtype(pixels, tf.float32))).items():
            out.setdefault(key, []).append(np.asarray(value))
    return {key: np.concatenate(values) for key, values in out.items()}


def write_predictions(out_stem, files, probs, class_names, overwrite, scores=None):
    """`<out_stem>.npy` (class ids [N]) and `<out_stem>.csv` (path, class, confidence), together, atomically.

    scores: outlier scores [N] or None; when given, also `<out_stem>_outlier.npy` and an
    `outlier_score` column. Paths are written byte for byte as the file system names them (names
    that are not UTF-8 included); cells that a spreadsheet would take for a formula are quoted
    (`files.csv_cell`).
    """
    predicted = probs.argmax(1)
    os.makedirs(os.path.dirname(out_stem) or '.', exist_ok=True)
    arrays = {'.npy': predicted} if scores is None else {'.npy': predicted, '_outlier.npy': scores}
    paths = [out_stem + suffix for suffix in arrays] + [out_stem + '.csv']
    extra = [] if scores is None else [scores]
    with atomic_outputs(paths, overwrite) as temps:
        for tmp, array in zip(temps, arrays.values()):
            with open(tmp, 'wb') as f:
                np.save(f, array)
        with open(temps[-1], 'w', newline='', errors='surrogateescape') as f:
            rows = [
                [file, class_names[c], f'{p:.6f}'] + [f'{v:.6f}' for v in score]
                for file, c, p, *score in zip(files, predicted, probs.max(1), *extra)
            ]
            write_csv(f, [['path', 'class', 'confidence'] + ['outlier_score'] * len(extra)] + rows)
    print(f'Wrote {", ".join(paths[:-1])} and {paths[-1]} ({len(files)} images)')


def folder_accuracy(files, folder, predicted, class_names):
    """Accuracy (%) when every file's class can be read from its folder or name, else None."""
    index = {name: i for i, name in enumerate(class_names)}
    truth = [index.get(image_files.class_of(f, folder), -1) for f in files]
    if all(t >= 0 for t in truth):
        return metrics.accuracy(truth, predicted)
    return None


def default_out(model_path):
    """predictions/ in the run dir of a checkpoint `<run>/tf/model.ckpt-N`, or beside a SavedModel."""
    return os.path.join(run_folder.holding(os.path.dirname(os.path.abspath(model_path))), 'predictions')


def infer(predict, shape, class_names, folder, out_stem, batch, overwrite):
    """Predicts every image under `folder` (`predict_files`), writes the predictions; returns the accuracy % or None."""
    files = image_files.list_images(folder)
    if not files:
        raise UserError(f'--inference_dir={folder}: no images found (png, jpg, jpeg, bmp, gif, webp)')
    out = predict_files(predict, files, shape, batch)
    probs = out['probabilities']
    write_predictions(out_stem, files, probs, class_names, overwrite, out.get('outlier_score'))
    acc = folder_accuracy(files, folder, probs.argmax(1), class_names)
    if acc is None:
        print('Accuracy not computed: some file or folder names are not class names of this dataset')
    else:
        print(f'Inference accuracy: {acc:.2f}% on {len(files)} images')
    return acc
