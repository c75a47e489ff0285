"""A sweep's report: results aggregated into tables (mean ± sample std over seeds), rendered with pandas as
Markdown, CSV and LaTeX, a tidy CSV of every run, and the plots of :mod:`.plots`."""
import json
import importlib.util
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
from .plots import plot_dataset, plot_paths
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


def _pandas():
    import pandas  # imported on use: only the reports need it
    return pandas


def _columns(tables: List[Table]) -> List[str]:
    columns = []
    for table in tables:
        for col in table.columns:
            if col not in columns:
                columns.append(col)
    return columns


def summary_frame(tables: List[Table]):
    """The aggregated tables as one DataFrame: a row per (backbone, method, shots); per column (datasets, then
    averages) ``<col> mean``, ``<col> std`` (NaN for one seed) and ``<col> n`` (NA where the row has no value)."""
    pd = _pandas()
    columns = _columns(tables)
    records = []
    for table in tables:
        for row in table.rows:
            record = {'backbone': table.backbone, 'method': row[0], 'shots': row[1]}
            for col in columns:
                cell = table.cells[row].get(col)
                record[f'{col} mean'] = float('nan') if cell is None else cell.mean
                record[f'{col} std'] = float('nan') if cell is None or cell.std is None else cell.std
                record[f'{col} n'] = None if cell is None else cell.n
            records.append(record)
    header = ['backbone', 'method', 'shots'] + [f'{c} {s}' for c in columns for s in ('mean', 'std', 'n')]
    frame = pd.DataFrame.from_records(records, columns=header)
    for col in columns:
        frame[f'{col} mean'] = frame[f'{col} mean'].astype('float64')
        frame[f'{col} std'] = frame[f'{col} std'].astype('float64')
        frame[f'{col} n'] = frame[f'{col} n'].astype('Int64')
    return frame.astype({'shots': 'int64'})


def render_csv(tables: List[Table]) -> str:
    """One row per (backbone, method, shots); per column ``<col> mean``, ``<col> std``, ``<col> n``."""
    return summary_frame(tables).to_csv(index=False, float_format='%.4f', lineterminator='\n')


def _markdown(header: List[str], lines: List[List[str]]) -> List[str]:
    """A GitHub Markdown table, cells as given (no padding, no number parsing)."""
    frame = _pandas().DataFrame(lines, columns=header, dtype=object)
    return frame.to_markdown(index=False, tablefmt='pipe', stralign=None, numalign=None,
                             disable_numparse=True).splitlines()


#: LaTeX's special characters in text, and what stands for them
_TEX_SPECIAL = {'\\': r'\textbackslash{}', '&': r'\&', '%': r'\%', '$': r'\$', '#': r'\#', '_': r'\_',
                '{': r'\{', '}': r'\}', '~': r'\textasciitilde{}', '^': r'\textasciicircum{}'}


def tex_escape(text: str) -> str:
    """``text`` for LaTeX's text mode: its special characters escaped."""
    return ''.join(_TEX_SPECIAL.get(c, c) for c in str(text))


def tex_cell(cell: Optional[Cell], digits: int = 2) -> str:
    """``$mean \\pm std$`` (``$mean$`` for a single seed; ``--`` for no value)."""
    if cell is None:
        return '--'
    std = rf' \pm {cell.std:.{digits}f}' if cell.std is not None else ''
    return f'${cell.mean:.{digits}f}{std}$'


def _tabular(header: List[str], lines: List[List[str]]) -> str:
    frame = _pandas().DataFrame(lines, columns=[tex_escape(h) for h in header], dtype=object)
    return frame.to_latex(index=False, escape=False, column_format='lr' + 'c' * (len(header) - 2))


def render_latex(tables: List[Table]) -> str:
    """The tables as LaTeX tabulars (booktabs rules): a row per (method, shots), a cell ``$mean \\pm std$`` (test
    top-1 %, sample std over seeds), and the number of seeds of the row in the last column (``2--3`` where the
    row's cells have different counts). RN50 tables are followed by the published numbers."""
    out = ['% Few-shot sweep report: test top-1 (%), mean $\\pm$ sample std over few-shot seeds; n: seeds.',
           '% Needs \\usepackage{booktabs}. Shots 0: zero-shot CLIP, which uses no shots.', '']
    for table in tables:
        lines = []
        for row in table.rows:
            cells = table.cells[row]
            ns = sorted({cell.n for cell in cells.values()})
            n = str(ns[0]) if len(ns) == 1 else f'{ns[0]}--{ns[-1]}'
            lines.append([tex_escape(row[0]), str(row[1])] + [tex_cell(cells.get(c)) for c in table.columns] + [n])
        out += [f'% Backbone: {table.backbone}', _tabular(['method', 'shots'] + table.columns + ['n'], lines)]
        if table.backbone == PUBLISHED_BACKBONE:
            columns, body = _published_rows(table)
            if body:
                out += [f'% {PUBLISHED_LABEL}',
                        _tabular(['method', 'shots'] + columns,
                                 [[tex_escape(line[0])] + [v if v != '–' else '--' for v in line[1:]]
                                  for line in body])]
    return '\n'.join(out)


def runs_frame(results: List[Result], kept: Optional[Sequence[Result]] = None, work_dir: str = ''):
    """One row per results.json (a run): ``results_json`` (its path, relative to ``work_dir``), ``report_row``
    (the report row it belongs to), ``in_report`` (False for a duplicate the report leaves out), then every field
    of the file: nested objects flattened to ``key.subkey`` columns, lists (and empty objects) as JSON text,
    null as an empty cell. Columns in the order the fields first appear; rows by backbone, row, dataset, shots,
    seed."""
    pd = _pandas()
    kept_ids = {id(r) for r in (results if kept is None else kept)}
    meta = ('results_json', 'report_row', 'in_report')
    ordered = sorted(results, key=lambda r: (r.backbone, method_key(r.label or r.method), r.dataset, r.shots,
                                             r.seed if r.seed is not None else 0, r.path))
    rows, columns = [], list(meta)
    for r in ordered:
        fields = {}
        _flatten(r.record or {}, '', fields)
        row = {'results_json': osp.relpath(r.path, work_dir).replace(os.sep, '/') if work_dir else r.path,
               'report_row': r.label or r.method, 'in_report': id(r) in kept_ids}
        for key, value in fields.items():
            key = f'record.{key}' if key in meta else key
            row[key] = value
            if key not in columns:
                columns.append(key)
        rows.append(row)
    return pd.DataFrame(rows, columns=columns, dtype=object)


def _flatten(value, prefix: str, into: Dict):
    if isinstance(value, dict) and value:
        for key, item in value.items():
            _flatten(item, f'{prefix}.{key}' if prefix else str(key), into)
    elif isinstance(value, (dict, list)):
        into[prefix] = json.dumps(value)
    else:
        into[prefix] = value


def render_runs_csv(results: List[Result], kept: Optional[Sequence[Result]] = None, work_dir: str = '') -> str:
    """:func:`runs_frame` as CSV."""
    return runs_frame(results, kept, work_dir).to_csv(index=False, lineterminator='\n')


def render_markdown(work_dir: str, tables: List[Table], n_files: int, plots: Dict[str, str],
                    notes: Sequence[str] = (), incomplete: Sequence[str] = (),
                    other_formats: Optional[Dict[str, Dict[str, str]]] = None) -> str:
    lines = ['# Few-shot sweep report', '',
             f'Work dir: `{work_dir}` ({n_files} results.json). Cells: test top-1 (%), mean ± sample std over '
             'few-shot seeds, n = number of seeds. Shots 0: zero-shot CLIP, which uses no shots.',
             f'`{AVERAGE}`: mean over the 11 paper datasets ({", ".join(PAPER_DATASETS)}), shown when a row has '
             'all 11; otherwise `avg (N datasets)`: the mean over the N datasets the row has (rows with one '
             'dataset get none). Its std is over the per-seed averages.',
             'The same table: `report.csv` (`<column> mean`, `std`, `n`), `report.tex` (LaTeX tabulars, booktabs); '
             'every run, every field of its results.json: `runs.csv`.', '']
    for table in tables:
        lines += [f'## Backbone: {table.backbone}', '']
        body = [[label, str(shots)] + [table.cells[(label, shots)][c].text() if c in table.cells[(label, shots)]
                                       else '–' for c in table.columns] for label, shots in table.rows]
        lines += _markdown(['method', 'shots'] + table.columns, body) + ['']
        if table.backbone == PUBLISHED_BACKBONE:
            lines += _published_markdown(table)
    if plots:
        lines += ['## Plots', '']
        for ds, path in plots.items():
            rel = osp.relpath(path, work_dir).replace(os.sep, '/')
            others = ', '.join(f'[{fmt.upper()}]({osp.relpath(p, work_dir).replace(os.sep, "/")})'
                               for fmt, p in (other_formats or {}).get(ds, {}).items())
            lines += [f'![{ds}]({rel})' + (f' ({others})' if others else ''), '']
    if incomplete:
        lines += ['## Runs without results.json', '', 'Failed, interrupted or still running:', '']
        lines += [f'- `{path}`' for path in incomplete] + ['']
    if notes:
        lines += ['## Files not counted', ''] + [f'- {note}' for note in notes] + ['']
    return '\n'.join(lines)


def _published_rows(table: Table) -> Tuple[List[str], List[List[str]]]:
    """(columns, rows) of the published numbers of the table's methods, over its paper datasets."""
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
    return columns, body


def _published_markdown(table: Table) -> List[str]:
    columns, body = _published_rows(table)
    if not body:
        return []
    return [f'### {PUBLISHED_LABEL}', ''] + _markdown(['method', 'shots'] + columns, body) + ['']


def _safe_name(name: str) -> str:
    return re.sub(r'[^\w.-]+', '_', name).strip('_') or 'unnamed'


def report_problems(work_dir: str) -> List[str]:
    """What the report of ``work_dir`` lists as problems: every results.json that is not valid (unreadable, not
    JSON, fields missing, non-finite numbers) and every run folder (``shot<K>_seed<S>``) without one."""
    work_dir = osp.abspath(work_dir)
    return collect_results(work_dir)[1] + [f'{path}: no results.json (failed, interrupted or still running)'
                                           for path in find_incomplete(work_dir)]


def write_reports(work_dir: str, out=None) -> Dict[str, str]:
    """Aggregate every results.json under ``work_dir`` into report.md, report.csv, report.tex, runs.csv and
    plots/<dataset>.{png,pdf,svg} there, each written atomically.

    Returns {'md': path, 'csv': path, 'tex': path, 'runs': path, '<dataset>': png path,
    '<dataset> (pdf)': path, '<dataset> (svg)': path, ...}; nothing is written when there are no results (the
    result is then empty).
    """
    out = out or sys.stdout
    work_dir = osp.abspath(work_dir)
    found, notes = collect_results(work_dir)
    results, dup_notes = label_and_dedupe(found, work_dir)
    notes = notes + dup_notes
    incomplete = find_incomplete(work_dir)
    if not results:
        print(f'report: no usable results.json under {work_dir}', file=out, flush=True)
        return {}
    tables = aggregate(results)
    plots, other_formats, plot_files = {}, {}, {}
    can_plot = importlib.util.find_spec('matplotlib') is not None
    if not can_plot:  # the tables need no plots: say how to get them, never fail a finished sweep for them
        notes = notes + ["no plots: matplotlib is not installed (pip install 'tip_adapter_mm[plots]')"]
        print(f'report: {notes[-1]}', file=out, flush=True)
    for dataset in dataset_order(ds for t in tables for ds in t.datasets) + [AVERAGE]:
        with_data = [t for t in tables if any(dataset in t.cells[row] for row in t.rows)]
        if with_data and can_plot:
            paths = plot_paths(osp.join(work_dir, 'plots'), _safe_name(dataset))
            plot_dataset(with_data, dataset, list(paths.values()))
            plots[dataset] = paths.pop('png')
            other_formats[dataset] = paths
            plot_files[dataset] = plots[dataset]
            plot_files.update({f'{dataset} ({fmt})': p for fmt, p in paths.items()})
    paths = {key: osp.join(work_dir, name) for key, name in
             (('md', 'report.md'), ('csv', 'report.csv'), ('tex', 'report.tex'), ('runs', 'runs.csv'))}
    _atomic_text(paths['csv'], render_csv(tables))
    _atomic_text(paths['tex'], render_latex(tables))
    _atomic_text(paths['runs'], render_runs_csv(found, results, work_dir))
    _atomic_text(paths['md'], render_markdown(work_dir, tables, len(results) + len(dup_notes), plots, notes,
                                              incomplete, other_formats))
    return {**paths, **plot_files}
