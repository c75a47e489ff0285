"""Plots of a sweep report: accuracy against shots, one figure per dataset (matplotlib, Agg, no display), written
as PNG (:data:`PNG_DPI`), PDF and SVG.

Each measured method is a line with error bars (std over seeds) at its shots, shifted sideways by a small,
per-method factor (:func:`errorbar_offsets`) so that methods at the same shots never hide each other's bars; the
published numbers (:mod:`tip_adapter_mm.published`, RN50 only) are dashed lines at the exact shots.
"""
import os.path as osp
from typing import TYPE_CHECKING, Dict, List, Sequence, Union

from ..published import LABEL as PUBLISHED_LABEL
from ..published import published
from ..utils import atomic_write_path
from .results import method_key

if TYPE_CHECKING:
    from .report import Table

#: the formats :func:`plot_dataset` writes, by file extension
FORMATS = ('png', 'pdf', 'svg')
#: the resolution of the PNGs (the vector formats have none)
PNG_DPI = 300
#: the sideways step between two methods' error bars, in octaves of shots (log2 units): 0.06 -> x 1.04
OFFSET_STEP = 0.06


def errorbar_offsets(n_series: int, step: float = OFFSET_STEP, span: float = 0.4) -> List[float]:
    """Sideways shifts (log2 units) of ``n_series`` error-bar series: distinct, centred on 0, evenly spaced.

    The step shrinks so that all shifts stay within ``span`` octaves (a 1-shot and a 2-shot point never meet).
    """
    if n_series <= 0:
        return []
    if n_series > 1:
        step = min(step, span / (n_series - 1))
    return [(i - (n_series - 1) / 2) * step for i in range(n_series)]


def shifted(shots: Sequence[float], offset: float) -> List[float]:
    """Shot counts moved by ``offset`` octaves (the x axis is log2): ``k * 2 ** offset``."""
    return [k * 2 ** offset for k in shots]


def dataset_figure(tables: List['Table'], dataset: str):
    """(figure, series labels) of accuracy against shots for one dataset (or 'average')."""
    from ..utils.extras import import_extra
    purpose = "plotting the sweep report"
    FigureCanvasAgg = import_extra('matplotlib.backends.backend_agg', 'plots', purpose).FigureCanvasAgg
    Figure = import_extra('matplotlib.figure', 'plots', purpose).Figure

    fig = Figure(figsize=(6.4, 4.4))
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
    offsets = iter(errorbar_offsets(sum(any(k > 0 for k in points) for _, _, points in series)))
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
            ax.errorbar(shifted(shots, next(offsets)), [points[k].mean for k in shots],
                        yerr=[points[k].std or 0. for k in shots], color=color, marker='o', markersize=4,
                        linestyle='-', linewidth=1.5, capsize=3, label=name)
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
    ax.minorticks_off()
    ax.set_xlim(ticks[0] / 1.3, ticks[-1] * 1.3)
    ax.set_xlabel('shots per class')
    ax.set_ylabel('test top-1 (%)')
    backbones = ', '.join(t.backbone for t in tables)
    ax.set_title(f'{dataset} ({backbones}); error bars: std over seeds', fontsize=10)
    ax.grid(True, alpha=0.3)
    if labels:
        ax.legend(fontsize=7, loc='best')
    fig.tight_layout()
    return fig, labels


def save_figure(fig, path: str) -> str:
    """Write ``fig`` to ``path`` atomically (a temporary file beside it, then renamed), in the format its
    extension names (:data:`FORMATS`); PNGs at :data:`PNG_DPI`."""
    fmt = osp.splitext(path)[1].lstrip('.').lower()
    if fmt not in FORMATS:
        raise ValueError(f'{path}: not a plot format ({", ".join(FORMATS)})')
    metadata = {'pdf': {'CreationDate': None}, 'svg': {'Date': None}}.get(fmt, {})  # the same file for the same plot
    with atomic_write_path(path) as tmp:
        fig.savefig(tmp, format=fmt, dpi=PNG_DPI if fmt == 'png' else 'figure', metadata=metadata)
    return path


def plot_dataset(tables: List['Table'], dataset: str, path: Union[str, Sequence[str]]) -> List[str]:
    """Accuracy against shots for one dataset (or 'average') to ``path`` (one path or several, the format from
    each extension: .png, .pdf, .svg); return the series labels."""
    fig, labels = dataset_figure(tables, dataset)
    for p in [path] if isinstance(path, str) else path:
        save_figure(fig, p)
    return labels


def plot_paths(folder: str, name: str, formats: Sequence[str] = FORMATS) -> Dict[str, str]:
    """{format: path} of one plot's files in ``folder``."""
    return {fmt: osp.join(folder, f'{name}.{fmt}') for fmt in formats}

