"""What TensorBoard shows as pictures: grids of training batches and the test confusion matrix, as pure functions.

Everything here works on numpy arrays and returns numpy arrays or text; libml/report/reporter.py writes
them as summaries. matplotlib is imported only when a figure is drawn (Agg, no pyplot state).
"""

import math

import numpy as np

# A confusion matrix annotates its counts up to this many classes (beyond, the cells are unreadable).
ANNOTATE_MAX_CLASSES = 30


def grid(images, columns=8, limit=64, min_side=32):
    """One picture of the first `limit` images: rows of `columns` tiles, 1-pixel white lines between.

    images: [N, H, W, C] float in [-1, 1] (C = 1 or 3), N >= 1. Tiles are enlarged by the
    smallest integer factor that makes them at least `min_side` pixels high (nearest
    neighbour). Returns uint8 [rows * (h + 1) - 1, cols * (w + 1) - 1, C], h, w the enlarged
    sides, cols = min(columns, n), rows = ceil(n / cols), n = min(N, limit); empty cells white.
    """
    images = np.asarray(images, np.float32)[:limit]
    n, h, w, c = images.shape
    scale = max(1, math.ceil(min_side / h))
    tiles = np.round((np.clip(images, -1.0, 1.0) + 1.0) * 127.5).astype(np.uint8)
    tiles = tiles.repeat(scale, axis=1).repeat(scale, axis=2)
    h, w = h * scale, w * scale
    cols = min(columns, n)
    rows = math.ceil(n / cols)
    out = np.full((rows * (h + 1) - 1, cols * (w + 1) - 1, c), 255, np.uint8)
    for i in range(n):
        top, left = (i // cols) * (h + 1), (i % cols) * (w + 1)
        out[top : top + h, left : left + w] = tiles[i]
    return out


def confusion_matrix(labels, predictions, nclass):
    """Counts int64 [nclass, nclass]: entry [t, p] = images of true class t predicted as class p.

    labels, predictions: int [N] in [0, nclass). Rows sum to the class counts; the whole to N.
    """
    labels, predictions = np.asarray(labels, np.int64), np.asarray(predictions, np.int64)
    return np.bincount(labels * nclass + predictions, minlength=nclass * nclass).reshape(nclass, nclass)


def confusion_table(matrix, class_names):
    """The counts as a Markdown table (TensorBoard's text dashboard): one row per true class."""
    names = [str(n).replace('|', '/') for n in class_names]
    lines = ['| true \\ predicted | ' + ' | '.join(names) + ' |', '|---' * (len(names) + 1) + '|']
    lines += [f'| **{name}** | ' + ' | '.join(str(int(v)) for v in row) + ' |' for name, row in zip(names, matrix)]
    return '\n'.join(lines)


def confusion_figure(matrix, class_names, title=''):
    """The confusion matrix drawn as an RGB picture: uint8 [H, W, 3].

    Rows are true classes, columns predicted ones, labelled with `class_names`; each cell's
    colour is its share of the row (the class's recall on the diagonal) and, up to
    ANNOTATE_MAX_CLASSES classes, its count is written in it.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    matrix = np.asarray(matrix)
    k = len(class_names)
    names = [str(n) for n in class_names]
    font = max(5.0, min(10.0, 120.0 / max(k, 1)))
    longest = max((len(n) for n in names), default=1) * 0.6 * font / 72  # inches of the longest name
    rotate = longest > 0.4
    # Fixed margins (inches) around a square plot: cheaper than tight_layout, the costliest step of a draw.
    plot, left, top, right = min(3.0 + 0.4 * k, 20.0), 0.55 + longest, 0.35, 0.15
    bottom = 0.55 + (0.71 * longest if rotate else font / 72)
    width, height = plot + left + right, plot + bottom + top
    fig = Figure(figsize=(width, height), dpi=80)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_axes((left / width, bottom / height, plot / width, plot / height))
    share = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
    ax.imshow(share, cmap='Blues', vmin=0.0, vmax=1.0, interpolation='nearest', aspect='auto')
    if k <= ANNOTATE_MAX_CLASSES:
        for (t, p), count in np.ndenumerate(matrix):
            colour = 'white' if share[t, p] > 0.5 else 'black'
            ax.text(p, t, str(int(count)), ha='center', va='center', fontsize=font, color=colour)
    ax.set_xticks(range(k), names, fontsize=font, rotation=45 if rotate else 0, ha='right' if rotate else 'center')
    ax.set_yticks(range(k), names, fontsize=font)
    ax.set_xlabel('predicted class')
    ax.set_ylabel('true class')
    if title:
        ax.set_title(title, fontsize=10)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[:, :, :3].copy()
