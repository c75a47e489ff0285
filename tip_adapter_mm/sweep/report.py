"""A sweep's report: results aggregated into tables (mean ± sample std over seeds), rendered as Markdown and
CSV, and written with the plots of :mod:`.plots`."""
import csv
import io
import os
import os.path as osp
import re
import statistics
import sys
from collections import defaultdict
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from ..published import BACKBONE as PUBLISHED_BACKBONE
from ..published import LABEL as PUBLISHED_LABEL
from ..published import PAPER_DATASETS, published
from ..utils import atomic_write_path
from .plots import plot_dataset
from .results import Result, collect_results, find_incomplete, label_and_dedupe, method_key

AVERAGE = 'average'


@dataclass
class Cell:
    mean: float
    std: Optional[float]  # sample std over seeds; None for a single seed
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> 'Cell':
        values = list(values)
        return cls(statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None, len(values))

    def text(self, digits: int = 2) -> str:
        std = f' ± {self.std:.{digits}f}' if self.std is not None else ''
        return f'{self.mean:.{digits}f}{std} (n={self.n})'


def average_column(n_datasets: int, complete: bool) -> str:
    """The name of an average column: 'average' over the 11 paper datasets, otherwise 'avg (N datasets)'."""
    return AVERAGE if complete else f'avg ({n_datasets} dataset{"s" if n_datasets != 1 else ""})'


def row_average(per_dataset: Dict[str, Dict]) -> Optional[Tuple[str, Cell]]:
    """(column, cell) of a row's average over datasets, or None for a row with fewer than two datasets.

    Over the 11 paper datasets when the row has all of them (column 'average'), otherwise over every dataset
    it has (column 'avg (N datasets)'). The mean is the mean of the per-dataset means; std and n are over the
    seeds every averaged dataset has (the std of the per-seed averages), std empty when fewer than two.
    """
    complete = all(ds in per_dataset for ds in PAPER_DATASETS)
    datasets = list(PAPER_DATASETS) if complete else sorted(per_dataset)
    if len(datasets) < 2:
        return None
    mean = statistics.fmean(statistics.fmean(per_dataset[ds].values()) for ds in datasets)
    seeds = set.intersection(*(set(per_dataset[ds]) for ds in datasets))
    per_seed = [statistics.fmean(per_dataset[ds][s] for ds in datasets) for s in seeds]
    std = statistics.stdev(per_seed) if len(per_seed) > 1 else None
    return average_column(len(datasets), complete), Cell(mean, std, len(per_seed))


def dataset_order(datasets) -> List[str]:
    datasets = set(datasets)
    return [d for d in PAPER_DATASETS if d in datasets] + sorted(datasets - set(PAPER_DATASETS))


@dataclass
class Table:
    """The report of one backbone: rows (label, shots) x columns (datasets, then averages)."""
    backbone: str
    datasets: List[str]
    average_columns: List[str]
    rows: List[Tuple[str, int]]
    cells: Dict[Tuple[str, int], Dict[str, Cell]]
    seeds: Dict[Tuple[str, int], Dict[str, Dict]]  # row -> dataset -> {seed: top1}

    @property
    def columns(self) -> List[str]:
        return self.datasets + self.average_columns


def aggregate(results: List[Result]) -> List[Table]:
    """One table per backbone (usually one), from labelled, de-duplicated results."""
    by_backbone = defaultdict(lambda: defaultdict(lambda: defaultdict(dict)))
    for r in results:
        by_backbone[r.backbone][(r.label, r.shots)][r.dataset][r.seed] = r.top1
    tables = []
    for backbone in sorted(by_backbone):
        rows_data = by_backbone[backbone]
        rows = sorted(rows_data, key=lambda row: (method_key(row[0]), row[1]))
        cells, averages = {}, []
        for row in rows:
            cells[row] = {ds: Cell.of(values.values()) for ds, values in rows_data[row].items()}
            avg = row_average(rows_data[row])
            if avg is not None:
                cells[row][avg[0]] = avg[1]
                if avg[0] not in averages:
                    averages.append(avg[0])
        averages.sort(key=lambda c: (c != AVERAGE, -int(re.sub(r'\D', '', c) or 0)))
        datasets = dataset_order(ds for row in rows_data.values() for ds in row)
        tables.append(Table(backbone, datasets, averages, rows, cells,
                            {row: {ds: dict(v) for ds, v in rows_data[row].items()} for row in rows}))
    return tables


def _atomic_text(path: str, text: str):
    with atomic_write_path(path) as tmp:
        with open(tmp, 'w', newline='') as f:
            f.write(text)


def render_csv(tables: List[Table]) -> str:
    """One row per (backbone, method, shots); per column ``<col> mean``, ``<col> std``, ``<col> n``."""
    columns = []
    for table in tables:
        for col in table.columns:
            if col not in columns:
                columns.append(col)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator='\n')
    writer.writerow(['backbone', 'method', 'shots'] + [f'{c} {s}' for c in columns for s in ('mean', 'std', 'n')])
    for table in tables:
        for row in table.rows:
            line = [table.backbone, row[0], row[1]]
            for col in columns:
                cell = table.cells[row].get(col)
                line += (['', '', ''] if cell is None else
                         [f'{cell.mean:.4f}', '' if cell.std is None else f'{cell.std:.4f}', cell.n])
            writer.writerow(line)
    return buf.getvalue()


def _md_table(header: List[str], lines: List[List[str]], align: str) -> List[str]:
    out = ['| ' + ' | '.join(header) + ' |', '|' + '|'.join(align for _ in header) + '|']
    return out + ['| ' + ' | '.join(line) + ' |' for line in lines]


def render_markdown(work_dir: str, tables: List[Table], n_files: int, plots: Dict[str, str],
                    notes: Sequence[str] = (), incomplete: Sequence[str] = ()) -> str:
    lines = ['# Few-shot sweep report', '',
             f'Work dir: `{work_dir}` ({n_files} results.json). Cells: test top-1 (%), mean ± sample std over '
             'few-shot seeds, n = number of seeds. Shots 0: zero-shot CLIP, which uses no shots.',
             f'`{AVERAGE}`: mean over the 11 paper datasets ({", ".join(PAPER_DATASETS)}), shown when a row has '
             'all 11; otherwise `avg (N datasets)`: the mean over the N datasets the row has (rows with one '
             'dataset get none). Its std is over the per-seed averages.', '']
    for table in tables:
        lines += [f'## Backbone: {table.backbone}', '']
        body = [[label, str(shots)] + [table.cells[(label, shots)][c].text() if c in table.cells[(label, shots)]
                                       else '–' for c in table.columns] for label, shots in table.rows]
        lines += _md_table(['method', 'shots'] + table.columns, body, '---') + ['']
        if table.backbone == PUBLISHED_BACKBONE:
            lines += _published_markdown(table)
    if plots:
        lines += ['## Plots', '']
        for ds, path in plots.items():
            rel = osp.relpath(path, work_dir).replace(os.sep, '/')
            lines += [f'![{ds}]({rel})', '']
    if incomplete:
        lines += ['## Runs without results.json', '', 'Failed, interrupted or still running:', '']
        lines += [f'- `{path}`' for path in incomplete] + ['']
    if notes:
        lines += ['## Files not counted', ''] + [f'- {note}' for note in notes] + ['']
    return '\n'.join(lines)


def _published_markdown(table: Table) -> List[str]:
    columns = [c for c in table.datasets if c in PAPER_DATASETS]
    if AVERAGE in table.average_columns:
        columns.append(AVERAGE)
    methods = sorted({label for label, _ in table.rows}, key=method_key)
    body = []
    for method in methods:
        series = {c: published(method, c, table.backbone) for c in columns}
        shots = sorted({k for s in series.values() if s for k in s})
        for k in shots:
            body.append([method, str(k)] + [f'{series[c][k]:.2f}' if series[c] and k in series[c] else '–'
                                            for c in columns])
    if not body:
        return []
    return ([f'### {PUBLISHED_LABEL}', '']
            + _md_table(['method', 'shots'] + columns, body, '---') + [''])


def _safe_name(name: str) -> str:
    return re.sub(r'[^\w.-]+', '_', name).strip('_') or 'unnamed'


def report_problems(work_dir: str) -> List[str]:
    """What the report of ``work_dir`` lists as problems: every results.json that is not valid (unreadable, not
    JSON, fields missing, non-finite numbers) and every run folder (``shot<K>_seed<S>``) without one."""
    work_dir = osp.abspath(work_dir)
    return collect_results(work_dir)[1] + [f'{path}: no results.json (failed, interrupted or still running)'
                                           for path in find_incomplete(work_dir)]


def write_reports(work_dir: str, out=None) -> Dict[str, str]:
    """Aggregate every results.json under ``work_dir`` into report.md, report.csv and plots/*.png there.

    Returns {'md': path, 'csv': path, '<dataset>': png path, ...}; nothing is written when there are no
    results (the result is then empty).
    """
    out = out or sys.stdout
    work_dir = osp.abspath(work_dir)
    results, notes = collect_results(work_dir)
    results, dup_notes = label_and_dedupe(results, work_dir)
    notes = notes + dup_notes
    incomplete = find_incomplete(work_dir)
    if not results:
        print(f'report: no usable results.json under {work_dir}', file=out, flush=True)
        return {}
    tables = aggregate(results)
    plots = {}
    for dataset in dataset_order(ds for t in tables for ds in t.datasets) + [AVERAGE]:
        with_data = [t for t in tables if any(dataset in t.cells[row] for row in t.rows)]
        if with_data:
            path = osp.join(work_dir, 'plots', f'{_safe_name(dataset)}.png')
            plot_dataset(with_data, dataset, path)
            plots[dataset] = path
    paths = {'md': osp.join(work_dir, 'report.md'), 'csv': osp.join(work_dir, 'report.csv')}
    _atomic_text(paths['csv'], render_csv(tables))
    _atomic_text(paths['md'], render_markdown(work_dir, tables, len(results) + len(dup_notes), plots, notes,
                                              incomplete))
    return {**paths, **plots}
