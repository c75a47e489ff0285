"""Plots of a sweep report: accuracy against shots, one PNG per dataset (matplotlib, Agg, no display)."""
from typing import TYPE_CHECKING, List

from ..published import LABEL as PUBLISHED_LABEL
from ..published import published
from ..utils import atomic_write_path
from .results import method_key

if TYPE_CHECKING:
    from .report import Table


def plot_dataset(tables: List['Table'], dataset: str, path: str) -> List[str]:
    """Accuracy against shots for one dataset (or 'average') to ``path`` (PNG); return the series labels."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.4), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    colors = [f'C{i}' for i in range(10)]
    labels, shots_seen, color_of = [], set(), {}
    several = len(tables) > 1
    series = []  # (table, label, {shots: cell})
    for table in tables:
        for label in sorted({lab for lab, _ in table.rows}, key=method_key):
            points = {k: table.cells[(lab, k)][dataset] for lab, k in table.rows
                      if lab == label and dataset in table.cells[(lab, k)]}
            if points:
                series.append((table, label, points))
    for table, label, points in series:
        name = f'{label} ({table.backbone})' if several else label
        color = color_of.setdefault(name, colors[len(color_of) % len(colors)])
        ref = published(label, dataset, table.backbone)
        if 0 in points:  # zero-shot: a level line with its std band
            cell = points[0]
            ax.axhline(cell.mean, color=color, linestyle='-', linewidth=1.5, label=f'{name} (no shots)')
            if cell.std:
                ax.axhspan(cell.mean - cell.std, cell.mean + cell.std, color=color, alpha=0.15, linewidth=0)
            labels.append(f'{name} (no shots)')
            if ref and 0 in ref:
                ax.axhline(ref[0], color=color, linestyle='--', linewidth=1.2, label=f'{label}: {PUBLISHED_LABEL}')
                labels.append(f'{label}: {PUBLISHED_LABEL}')
        shots = sorted(k for k in points if k > 0)
        if shots:
            ax.errorbar(shots, [points[k].mean for k in shots], yerr=[points[k].std or 0. for k in shots],
                        color=color, marker='o', linestyle='-', linewidth=1.5, capsize=3, label=name)
            labels.append(name)
            shots_seen.update(shots)
        ref_shots = sorted(k for k in (ref or {}) if k > 0)
        if ref_shots:
            ax.plot(ref_shots, [ref[k] for k in ref_shots], color=color, marker='x', linestyle='--', linewidth=1.2,
                    label=f'{label}: {PUBLISHED_LABEL}')
            labels.append(f'{label}: {PUBLISHED_LABEL}')
            shots_seen.update(ref_shots)
    ticks = sorted(shots_seen) or [1, 2, 4, 8, 16]
    ax.set_xscale('log', base=2)
    ax.set_xticks(ticks)
    ax.set_xticklabels([str(k) for k in ticks])
    ax.set_xlim(ticks[0] / 1.3, ticks[-1] * 1.3)
    ax.set_xlabel('shots per class')
    ax.set_ylabel('test top-1 (%)')
    backbones = ', '.join(t.backbone for t in tables)
    ax.set_title(f'{dataset} ({backbones}); error bars: std over seeds', fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc='best')
    fig.tight_layout()
    with atomic_write_path(path) as tmp:
        fig.savefig(tmp, format='png')
    return labels
