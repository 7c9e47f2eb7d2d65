"""A reproduction table's files: mean ± std over seeds and the paired lead as markdown and CSV, and its plots."""

import os
import textwrap

from libml.files import atomic_output, write_csv

import numpy as np


def markdown_table(header, rows):
    """A GitHub markdown table from a header list and rows of cells."""
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '|'.join('---' for _ in header) + '|']
    lines += ['| ' + ' | '.join(str(c) for c in row) + ' |' for row in rows]
    return '\n'.join(lines)


# Column titles of the outlier AUROCs a cell records (the median of its last 10 reports, `steps.train`), by set.
AUROC_TITLES = {'unlabelled': 'outlier AUROC, unlabelled', 'test_unseen': 'outlier AUROC, test vs unseen'}


def mean_std(values, digits=1):
    """'91.2 ± 0.4' over seeds (std with ddof=1; a single value has no ±), `digits` decimals."""
    values = np.asarray(values, float)
    if values.size == 1:
        return f'{values[0]:.{digits}f}'
    return f'{values.mean():.{digits}f} ± {values.std(ddof=1):.{digits}f}'


def auroc_sets(results):
    """The outlier sets (keys of AUROC_TITLES) some result of the table has an AUROC for."""
    return [name for name in AUROC_TITLES if any(name in r.get('aurocs', {}) for r in results)]


def auroc_cell(group, name):
    """Mean ± std over the seeds that have it of the `name` AUROC, 3 decimals; '' when none has it."""
    values = [r['aurocs'][name] for r in group if name in r.get('aurocs', {})]
    return mean_std(values, 3) if values else ''


def rows(results):
    """Results grouped by (method, keys) in first-seen order: [(cell, [results over seeds])]."""
    groups = {}
    for r in results:
        groups.setdefault((r['cell'].method, r['cell'].keys), []).append(r)
    return [(group[0]['cell'], group) for group in groups.values()]


def lead(group, results):
    """A row's mean lead (points) over the Supervised row of its number of labels, seed by seed.

    Paired: only the seeds both rows have count, so a row missing a seed is not compared with a
    baseline mean that includes it. '' for the baseline itself or when no seed is shared.
    """
    cell = group[0]['cell']
    labels = dict(cell.keys).get('labels')
    baseline = {
        r['seed']: r['accuracy']
        for r in results
        if r['cell'].method == 'Supervised' and dict(r['cell'].keys).get('labels') == labels
    }
    leads = [r['accuracy'] - baseline[r['seed']] for r in group if r['seed'] in baseline]
    if cell.method == 'Supervised' or not leads:
        return ''
    return f'{np.mean(leads):+.1f}'


def mask_shares(group):
    """'0.65 / 0.64': each seed's `mask` (mean of `monitors/mask` over its last 10 reports); '' when no seed has one
    (methods without a mask, or cells recorded before masks were)."""
    if all(r.get('mask') is None for r in group):
        return ''
    return ' / '.join('?' if r.get('mask') is None else f'{r["mask"]:.2f}' for r in group)


def write_table(table, results, out_dir, quiet=False):
    """table_<name>.md/.csv (mean ± std over seeds, paired lead over Supervised, per-seed convergence,
    per-seed mask share where the table shows it, outlier AUROCs where the cells have them, CPU time) and its
    plots."""
    masks = ['mask share, last 10 reports'] if table.show_mask else []
    sets = auroc_sets(results)
    header = [
        'method',
        *table.columns,
        'seeds',
        'test accuracy (%)',
        'lead over Supervised, same seeds',
        'change over previous 10 reports',
        *masks,
        *[AUROC_TITLES[name] for name in sets],
        'CPU time (min)',
    ]
    csv_masks = ['mask'] if table.show_mask else []
    auroc_columns = [f'auroc_{name}' for name in sets]
    lines = []
    csv_rows = [
        [
            'method',
            *table.columns,
            'seed',
            'test accuracy (%)',
            'change',
            *csv_masks,
            *auroc_columns,
            'cpu_min',
            'command',
        ]
    ]
    for cell, group in rows(results):
        keys = [v for _, v in cell.keys]
        changes = ' / '.join(f'{r["change"]:+.1f}' for r in group)
        cpu = sum(r['cpu_s'] for r in group) / 60
        lines.append(
            [
                cell.method,
                *keys,
                ','.join(str(r['seed']) for r in group),
                mean_std([r['accuracy'] for r in group]),
                lead(group, results),
                changes,
                *([mask_shares(group)] if table.show_mask else []),
                *[auroc_cell(group, name) for name in sets],
                f'{cpu:.1f}',
            ]
        )
        csv_rows += [
            [
                cell.method,
                *keys,
                r['seed'],
                f'{r["accuracy"]:.2f}',
                f'{r["change"]:+.2f}',
                *([mask_shares([r])] if table.show_mask else []),
                *[f'{r["aurocs"][name]:.4f}' if name in r.get('aurocs', {}) else '' for name in sets],
                f'{r["cpu_s"] / 60:.1f}',
                r['command'],
            ]
            for r in group
        ]
    total = sum(r['cpu_s'] for r in results) / 3600
    text = (
        f'## {table.title}\n\n'
        + markdown_table(header, lines)
        + f'\n\nTotal CPU time: {total:.1f} h (user + system, all cells).\n'
    )
    stem = os.path.join(out_dir, f'table_{table.name}')
    with atomic_output(stem + '.csv', overwrite=True) as tmp, open(tmp, 'w', newline='') as f:
        write_csv(f, csv_rows)
    with atomic_output(stem + '.md', overwrite=True) as tmp, open(tmp, 'w') as f:
        f.write(text)
    plot_curves(results, stem + '_curves.png', table.title)
    if table.x_column:
        plot_against(results, table.x_column, stem + '_mismatch.png', table.title)
    if not quiet:
        print('\n' + text, flush=True)


def _pyplot():
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    return plt


def plot_curves(results, path, title):
    """Test accuracy vs kimg, one line per row (mean over seeds, shaded ± std).

    Two panels: the whole run, and the second half of the shortest row with the accuracy axis zoomed.
    Rows past the tenth repeat the colours with a dashed line, so no two rows look alike.
    """
    plt = _pyplot()
    fig, (whole, zoom) = plt.subplots(1, 2, figsize=(12, 5.5))
    colours = plt.get_cmap('tab10').colors
    curves = []
    for i, (cell, group) in enumerate(rows(results)):
        length = min(len(r['curve']) for r in group)
        kimg = np.array([s for s, _ in group[0]['curve'][:length]]) / 1024
        acc = np.array([[v for _, v in r['curve'][:length]] for r in group])
        label = ' '.join([cell.method] + [str(v) for _, v in cell.keys])
        mean = acc.mean(0)
        style = dict(color=colours[i % 10], linestyle=('-', '--', ':')[i // 10 % 3])
        for ax in (whole, zoom):
            ax.plot(kimg, mean, label=label if ax is whole else None, **style)
            if len(group) > 1:
                std = acc.std(0, ddof=1)
                ax.fill_between(kimg, mean - std, mean + std, color=style['color'], alpha=0.12)
        curves.append((kimg, mean))
    start = min(k[-1] for k, _ in curves) / 2  # the second half of the shortest row
    late = np.concatenate([a[k >= start] for k, a in curves])
    zoom.set_xlim(start, max(k[-1] for k, _ in curves) * 1.02)
    zoom.set_ylim(np.floor(late.min()) - 1, np.ceil(late.max()) + 1)
    whole.set_title('whole run', fontsize=9)
    zoom.set_title(f'from {start:g} kimg, accuracy axis zoomed', fontsize=9)
    for ax in (whole, zoom):
        ax.set(xlabel='kimg (thousands of labelled images)', ylabel='test accuracy (%)')
        ax.grid(alpha=0.3)
    fig.suptitle(textwrap.fill(title, 100), fontsize=10)
    fig.legend(loc='lower center', ncol=min(4, len(curves)), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.04 * (len(curves) // 4 + 1), 1, 1))  # room below for the legend
    _save(fig, path)


def plot_against(results, column, path, title):
    """Accuracy and the outlier AUROCs (mean ± std over seeds) against `column` (e.g. mismatch '25%').

    One panel per quantity (accuracy, then each AUROC some cell has), one line per method. Each
    method's points are shifted a little sideways so that error bars at one level do not hide each
    other; a row of the column's value 'any' (the supervised baseline) is a band.
    """
    plt = _pyplot()
    panels = [(lambda r: r['accuracy'], 'test accuracy (%)')]
    panels += [(lambda r, n=name: r.get('aurocs', {}).get(n), AUROC_TITLES[name]) for name in auroc_sets(results)]
    fig, axes = plt.subplots(1, len(panels), figsize=(7 * len(panels), 5), squeeze=False)
    for ax, (value, label) in zip(axes[0], panels):
        _plot_panel(ax, results, column, value, label)
    fig.suptitle(textwrap.fill(title, 60 * len(panels)), fontsize=10)
    fig.tight_layout()
    _save(fig, path)


def _plot_panel(ax, results, column, value, label):
    """One quantity `value(result)` (None where a cell lacks it) against `column`, on the axes `ax`."""
    methods = {}
    for cell, group in rows(results):
        x = dict(cell.keys)[column]  # '25%', or 'any' for a row that does not depend on the column
        x = x if x == 'any' else float(str(x).rstrip('%'))
        found = [value(r) for r in group if value(r) is not None]
        if found:
            spread = np.std(found, ddof=1) if len(found) > 1 else 0.0
            methods.setdefault(cell.method, []).append((x, np.mean(found), spread))
    baselines = {m: p[0] for m, p in methods.items() if len(p) == 1 and p[0][0] == 'any'}  # not on the column
    for method, (_, mean, std) in baselines.items():
        ax.axhline(mean, linestyle='--', color='grey', label=f'{method} (labelled only)')
        if std:
            ax.axhspan(mean - std, mean + std, color='grey', alpha=0.15)  # ± std over seeds
    lines = [(m, p) for m, p in methods.items() if m not in baselines]
    levels = sorted({x for _, points in lines for x, _, _ in points})
    dodge = 0.012 * (max(levels) - min(levels)) if len(levels) > 1 else 0  # error bars side by side
    for i, (method, points) in enumerate(lines):
        xs = [p[0] + (i - (len(lines) - 1) / 2) * dodge for p in points]
        ax.errorbar(xs, [p[1] for p in points], yerr=[p[2] for p in points], marker='o', capsize=4, label=method)
    ax.set_xticks(levels)
    ax.set(xlabel=f'{column} (%)', ylabel=label)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def _save(fig, path):
    """Writes a laid-out figure as PNG (atomically) and frees it."""
    with atomic_output(path, overwrite=True) as tmp:
        fig.savefig(tmp, format='png', dpi=110)
    _pyplot().close(fig)
