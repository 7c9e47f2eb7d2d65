"""What a parity table reads off the recorded curves: accuracy, paired differences, speed, and the plot.

A cell's result holds curve [(images, test accuracy %)], cpu [(images, CPU seconds so far)] and
img_per_sec [(images, labelled img/s of the report period ending there)], one entry per report.
"""

import numpy as np


def accuracy(result):
    """Test accuracy of a cell (%): the median of its last 10 reports, as the project's tables."""
    return float(np.median([a for _, a in result['curve'][-10:]]))


def throughput(result):
    """Labelled img/s of the step with its input pipeline: the median over the report periods but the first
    (which includes tracing, start-up and the first fill of the pipeline); the only one if there is one."""
    rates = [r for _, r in result['img_per_sec']]
    return float(np.median(rates[1:] if len(rates) > 1 else rates))


def cpu_to_share(result, share=0.95):
    """CPU seconds until the first report at or above `share` of the cell's final accuracy (`accuracy`)."""
    target = share * accuracy(result)
    cpu = dict(result['cpu'])
    for images, value in result['curve']:
        if value >= target:
            return float(cpu[images])
    return float('nan')


def mean_std(values):
    """'91.2 ± 0.4' (std with ddof=1; one value alone has no ±; '' for none)."""
    values = np.asarray(values, float)
    if values.size == 0:
        return ''
    if values.size == 1:
        return f'{values[0]:.1f}'
    return f'{values.mean():.1f} ± {values.std(ddof=1):.1f}'


def paired(project, usb):
    """Project - USB accuracy over the seeds both have: 'mean ± standard error (n)' in points ('' for none)."""
    seeds = sorted(set(project) & set(usb))
    diffs = np.array([project[s] - usb[s] for s in seeds])
    if diffs.size == 0:
        return ''
    if diffs.size == 1:
        return f'{diffs[0]:+.1f} (1)'
    return f'{diffs.mean():+.1f} ± {diffs.std(ddof=1) / np.sqrt(diffs.size):.1f} ({diffs.size})'


def largest_gap(project, usb):
    """The largest mean gap project - USB along the curves, over the seeds both have: '+2.1 @ 12 kimg' ('' for none).

    project, usb: {seed: result}; the curves are compared report by report (same schedule, same steps).
    """
    seeds = sorted(set(project) & set(usb))
    if not seeds:
        return ''
    length = min(min(len(project[s]['curve']), len(usb[s]['curve'])) for s in seeds)
    if not length:
        return ''
    gaps = np.mean([[p - u for (_, p), (_, u) in zip(project[s]['curve'], usb[s]['curve'])][:length] for s in seeds], 0)
    i = int(np.argmax(np.abs(gaps)))
    return f'{gaps[i]:+.1f} @ {project[seeds[0]]["curve"][i][0] / 1024:g} kimg'


def table_rows(results, algorithms):
    """Markdown-ready rows, one per algorithm: accuracies, paired difference, speed ratio, CPU to 95 %.

    results: {side: {algorithm: {seed: result}}}.
    """
    rows = []
    for name in algorithms:
        project, usb = results['project'].get(name, {}), results['usb'].get(name, {})
        if not project and not usb:
            continue
        acc = {side: {seed: accuracy(r) for seed, r in cells.items()} for side, cells in (('p', project), ('u', usb))}
        speed = {side: [throughput(r) for r in cells.values()] for side, cells in (('p', project), ('u', usb))}
        ratio = np.median(speed['p']) / np.median(speed['u']) if speed['p'] and speed['u'] else float('nan')
        cpu = {side: [cpu_to_share(r) / 60 for r in cells.values()] for side, cells in (('p', project), ('u', usb))}
        rows.append(
            [
                name,
                mean_std(list(acc['p'].values())),
                mean_std(list(acc['u'].values())),
                paired(acc['p'], acc['u']),
                largest_gap(project, usb),
                f'{np.median(speed["p"]):.0f}' if speed['p'] else '',
                f'{np.median(speed["u"]):.0f}' if speed['u'] else '',
                f'{ratio:.2f}',
                mean_std(cpu['p']),
                mean_std(cpu['u']),
            ]
        )
    return rows


HEADER = [
    'algorithm',
    'project accuracy (%)',
    'USB accuracy (%)',
    'project - USB, same seed (points, ± s.e., n)',
    'largest mean gap along the curve',
    'project img/s',
    'USB img/s',
    'project / USB speed',
    'project CPU min to 95 %',
    'USB CPU min to 95 %',
]


def plot(results, algorithms, path):
    """One panel per algorithm: test accuracy against kimg, each side's mean over seeds (shaded: min to max)."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    names = [a for a in algorithms if results['project'].get(a) or results['usb'].get(a)]
    if not names:
        return
    cols = min(4, len(names))
    rows = (len(names) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False, sharey=True)
    for ax, name in zip(axes.flat, names):
        for side, color in (('project', 'tab:blue'), ('usb', 'tab:orange')):
            curves = [r['curve'] for r in results[side].get(name, {}).values() if r['curve']]
            if not curves:
                continue
            length = min(len(c) for c in curves)
            kimg = np.array([i for i, _ in curves[0][:length]]) / 1024
            values = np.array([[a for _, a in c[:length]] for c in curves])
            ax.plot(kimg, values.mean(0), color=color, marker='.', label=f'{side} ({len(curves)} seeds)')
            ax.fill_between(kimg, values.min(0), values.max(0), color=color, alpha=0.15)
        ax.set_title(name)
        ax.set_xlabel('kimg')
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel('test accuracy (%)')
    for ax in list(axes.flat)[len(names) :]:
        ax.axis('off')
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
