"""Batch grids and the confusion matrix (libml/report/pictures.py)."""

from libml.report import pictures

import numpy as np
from test_report_reporter import parse_table


def test_confusion_matrix_counts_true_rows_against_predicted_columns():
    labels = [0, 0, 1, 2, 2, 2]
    predictions = [0, 1, 1, 2, 0, 2]
    # By hand: class 0 -> predicted 0 once, 1 once; class 1 -> 1 once; class 2 -> 2 twice, 0 once.
    expected = [[1, 1, 0, 0], [0, 1, 0, 0], [1, 0, 2, 0], [0, 0, 0, 0]]  # class 3 never occurs
    matrix = pictures.confusion_matrix(labels, predictions, 4)
    assert matrix.dtype == np.int64
    np.testing.assert_array_equal(matrix, expected)


def test_confusion_table_and_figure_show_the_counts():
    matrix = np.array([[5, 1, 0], [2, 7, 0], [0, 0, 9]])
    names, counts = parse_table(pictures.confusion_table(matrix, ['cat', 'dog', 'a|b']))
    assert names == ['cat', 'dog', 'a/b']
    np.testing.assert_array_equal(counts, matrix)
    image = pictures.confusion_figure(matrix, ['cat', 'dog', 'a|b'], title='test')
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert image.shape[0] >= 200 and image.shape[1] >= 200
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 10  # drawn, not a blank canvas


def test_grid_tiles_row_major_enlarged_with_white_lines():
    images = np.stack([np.full((2, 2, 1), v, np.float32) for v in (-1.0, 0.0, 1.0)])
    out = pictures.grid(images, columns=2, min_side=4)  # tiles enlarged 2x to 4x4, 2 columns, 2 rows
    assert out.shape == (2 * 5 - 1, 2 * 5 - 1, 1) and out.dtype == np.uint8
    assert np.all(out[0:4, 0:4] == 0)  # -1 -> black
    assert np.all(out[0:4, 5:9] == 128)  # 0 -> mid grey
    assert np.all(out[5:9, 0:4] == 255)  # 1 -> white
    assert np.all(out[4, :] == 255) and np.all(out[:, 4] == 255)  # separating lines
    assert np.all(out[5:9, 5:9] == 255)  # empty cell
    assert pictures.grid(np.zeros((100, 8, 8, 3)), limit=64).shape == (8 * 33 - 1, 8 * 33 - 1, 3)
