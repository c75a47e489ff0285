"""Few-shot sweeps: run configs x shots x seeds through ``tools/train.py`` and report the results.

Every run is a separate process (``sys.executable tools/train.py``, or ``tools/dist_train.sh`` with
``--launcher pytorch``), so one failure does not end the sweep and each run's memory is freed. Run ``i`` of
config ``C`` writes to ``<work_dir>/<stem of C>/shot<K>_seed<S>/`` (its output goes to ``sweep.log`` there);
a run whose ``results.json`` exists is skipped, so an interrupted sweep resumes where it stopped. Configs with
``num_shots = 0`` (zero-shot CLIP) do not depend on the shots: they run once per seed, in ``shot0_seed<S>``.

The report step reads every ``results.json`` under the work dir and writes ``report.md`` and ``report.csv``
(rows: method and shots, columns: datasets, cells: mean ± sample std of test top-1 over seeds, and n) and
``plots/<dataset>.png`` (accuracy against shots on a log2 axis, one line per method with std error bars, and
the published RN50 numbers of :mod:`tip_adapter_mm.published` as dashed lines when the backbone is RN50).

    python tools/sweep.py --configs configs/tip_digits_16shot.py configs/zeroshot_digits.py \\
        --shots 1 2 4 8 16 --seeds 1 2 3 --work-dir work_dirs/sweep
    python tools/sweep.py --report-only --work-dir work_dirs/sweep
"""
import argparse
import csv
import io
import json
import math
import os
import os.path as osp
import re
import shlex
import socket
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from .published import BACKBONE as PUBLISHED_BACKBONE
from .published import LABEL as PUBLISHED_LABEL
from .published import PAPER_DATASETS, published
from .utils import atomic_write_path

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TRAIN_SCRIPT = osp.join(ROOT, 'tools', 'train.py')
DIST_TRAIN_SCRIPT = osp.join(ROOT, 'tools', 'dist_train.sh')
RESULTS = 'results.json'
RUN_LOG = 'sweep.log'
RUN_DIR = re.compile(r'^shot(\d+)_seed(-?\d+)$')
#: rows come in this order; other methods follow alphabetically
METHOD_ORDER = ('Zero-shot CLIP', 'Tip-Adapter', 'Tip-Adapter-F', 'Meta-Adapter')
AVERAGE = 'average'


# ---------------------------------------------------------------------------------------------------------
# running


@dataclass
class Run:
    """One training run of a sweep."""
    config: str  # absolute path
    shots: int  # 0 for a config that uses no shots
    seed: int
    work_dir: str
    shot_independent: bool = False

    @property
    def stem(self) -> str:
        return config_stem(self.config)

    @property
    def name(self) -> str:
        return f'{self.stem} shots={self.shots} seed={self.seed}'

    @property
    def results_path(self) -> str:
        return osp.join(self.work_dir, RESULTS)

    def train_args(self, cfg_options: Sequence[str] = ()) -> List[str]:
        """The arguments of tools/train.py for this run."""
        options = list(cfg_options)
        if not self.shot_independent:
            options.append(f'num_shots={self.shots}')
        options.append(f'fewshot_seed={self.seed}')
        return [self.config, '--work-dir', self.work_dir, '--cfg-options', *options]


@dataclass
class SweepSummary:
    """What a sweep did: the runs it started, skipped and saw fail (with their exit codes)."""
    ran: List[Run] = field(default_factory=list)
    skipped: List[Run] = field(default_factory=list)
    failed: List[Tuple[Run, int]] = field(default_factory=list)
    reports: Dict[str, str] = field(default_factory=dict)
    exit_code: int = 0


def config_stem(config: str) -> str:
    return osp.splitext(osp.basename(config))[0]


def is_shot_independent(config: str) -> bool:
    """Whether a config uses no shots (``num_shots = 0``, i.e. zero-shot CLIP)."""
    try:
        from mmengine.config import Config
        cfg = Config.fromfile(config, import_custom_modules=False)
    except Exception:  # noqa: BLE001  (an unreadable config fails in its own run, with its own error)
        return False
    return cfg.get('num_shots', None) == 0


def plan_runs(configs: Sequence[str], shots: Sequence[int], seeds: Sequence[int], work_dir: str) -> List[Run]:
    """Every config x shots x seeds, in that nesting order; shot-independent configs once per seed."""
    runs, seen = [], set()
    for config in configs:
        config = osp.abspath(config)
        independent = is_shot_independent(config)
        for k in ([0] if independent else shots):
            for seed in seeds:
                run = Run(config, int(k), int(seed),
                          osp.join(work_dir, config_stem(config), f'shot{k}_seed{seed}'), independent)
                if run.work_dir not in seen:  # a config given twice, or repeated shots/seeds
                    seen.add(run.work_dir)
                    runs.append(run)
    return runs


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def run_command(run: Run, cfg_options: Sequence[str] = (), launcher: str = 'none',
                gpus: int = 1) -> Tuple[List[str], Dict[str, str]]:
    """(argv, extra environment) that start a run."""
    args = run.train_args(cfg_options)
    if launcher == 'none':
        return [sys.executable, TRAIN_SCRIPT, *args], {}
    env = {'PYTHON': sys.executable}
    if 'PORT' not in os.environ:  # a fresh port per run: the previous run's may still be in TIME_WAIT
        env['PORT'] = str(_free_port())
    return ['bash', DIST_TRAIN_SCRIPT, args[0], str(gpus), *args[1:]], env


def _tail(path: str, lines: int = 15) -> str:
    try:
        with open(path, errors='replace') as f:
            return ''.join(f.readlines()[-lines:])
    except OSError:
        return ''


def execute(run: Run, cfg_options: Sequence[str] = (), launcher: str = 'none', gpus: int = 1) -> int:
    """Start one run in a child process, its output going to ``<run dir>/sweep.log``; return its exit code.

    A run that exits with 0 but wrote no results.json counts as failed (exit code -1 is reported).
    """
    argv, extra_env = run_command(run, cfg_options, launcher, gpus)
    os.makedirs(run.work_dir, exist_ok=True)
    log_path = osp.join(run.work_dir, RUN_LOG)
    with open(log_path, 'a') as log:
        log.write(f'# {time.strftime("%Y-%m-%d %H:%M:%S")} {shlex.join(argv)}\n')
        log.flush()
        code = subprocess.call(argv, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **extra_env})
    if code == 0 and not osp.exists(run.results_path):
        code = -1
    return code


def run_sweep(configs: Sequence[str], shots: Sequence[int], seeds: Sequence[int], work_dir: str,
              cfg_options: Sequence[str] = (), launcher: str = 'none', gpus: int = 1, dry_run: bool = False,
              out=None) -> SweepSummary:
    """Run (or, with ``dry_run``, list) every run that has no results.json yet; print progress to ``out``."""
    out = out or sys.stdout
    work_dir = osp.abspath(work_dir)
    runs = plan_runs(configs, shots, seeds, work_dir)
    summary = SweepSummary()
    todo = [r for r in runs if not osp.exists(r.results_path)]
    print(f'sweep: {len(runs)} run(s) in {work_dir} ({len(runs) - len(todo)} done already, {len(todo)} to run)',
          file=out, flush=True)
    for i, run in enumerate(runs, 1):
        prefix = f'[{i}/{len(runs)}] {run.name}'
        if osp.exists(run.results_path):
            summary.skipped.append(run)
            print(f'{prefix}: skipped ({RESULTS} exists)', file=out, flush=True)
            continue
        if dry_run:
            argv, env = run_command(run, cfg_options, launcher, gpus)
            env_prefix = ' '.join(f'{k}={shlex.quote(v)}' for k, v in env.items())
            print(f'{prefix}: would run: {env_prefix + " " if env_prefix else ""}{shlex.join(argv)}', file=out,
                  flush=True)
            continue
        print(f'{prefix}: running ...', file=out, flush=True)
        start = time.perf_counter()
        code = execute(run, cfg_options, launcher, gpus)
        seconds = time.perf_counter() - start
        summary.ran.append(run)
        if code == 0:
            top1 = _load_json(run.results_path).get('test_top1')
            acc = f', test top-1 {top1:.2f}' if isinstance(top1, (int, float)) else ''
            print(f'{prefix}: done in {seconds:.1f} s{acc}', file=out, flush=True)
        else:
            summary.failed.append((run, code))
            log_path = osp.join(run.work_dir, RUN_LOG)
            what = 'exited with 0 but wrote no results.json' if code == -1 else f'failed (exit code {code})'
            print(f'{prefix}: {what} after {seconds:.1f} s; log: {log_path}\n'
                  + _indent(_tail(log_path)), file=out, flush=True)
    return summary


def _indent(text: str, prefix: str = '    | ') -> str:
    return ''.join(prefix + line + '\n' for line in text.rstrip('\n').splitlines()) if text.strip() else ''


# ---------------------------------------------------------------------------------------------------------
# collecting and aggregating


@dataclass
class Result:
    """The part of one results.json the reports use."""
    path: str
    method: str
    dataset: str
    backbone: str
    shots: int
    seed: Optional[int]
    top1: float
    config: str
    mtime: float
    label: str = ''  # the row name; the method, or 'method [config]' where two configs collide


def _load_json(path):
    try:
        with open(path) as f:
            data = json.load(f)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _is_zero_shot(method: str, shots) -> bool:
    return not shots or method.lower().replace(' ', '-').startswith('zero-shot')


def collect_results(work_dir: str) -> Tuple[List[Result], List[str]]:
    """Every usable results.json under ``work_dir``, and a note for each one that is not usable."""
    results, problems = [], []
    for folder, dirs, files in os.walk(work_dir):
        dirs[:] = sorted(d for d in dirs if not d.startswith('.'))
        if RESULTS not in files:
            continue
        path = osp.join(folder, RESULTS)
        data = _load_json(path)
        top1 = data.get('test_top1')
        if not data:
            problems.append(f'{path}: unreadable')
            continue
        if not isinstance(top1, (int, float)) or math.isnan(top1):
            problems.append(f'{path}: no test_top1')
            continue
        method = str(data.get('method') or 'unknown')
        shots = data.get('num_shots')
        shots = 0 if _is_zero_shot(method, shots) else int(shots)
        seed = data.get('seed')
        results.append(Result(path=path, method=method, dataset=str(data.get('dataset') or 'unknown'),
                              backbone=str(data.get('backbone') or 'unknown'), shots=shots,
                              seed=int(seed) if isinstance(seed, (int, float)) else seed, top1=float(top1),
                              config=config_stem(str(data.get('config') or '')), mtime=osp.getmtime(path)))
    return results, problems


def find_incomplete(work_dir: str) -> List[str]:
    """Sweep run folders (``shot<K>_seed<S>``) under ``work_dir`` that hold no results.json."""
    missing = []
    for folder, dirs, files in os.walk(work_dir):
        dirs[:] = sorted(d for d in dirs if not d.startswith('.'))
        if RUN_DIR.match(osp.basename(folder)) and RESULTS not in files:
            missing.append(folder)
    return missing


def run_group(path: str, work_dir: str) -> str:
    """The experiment a results.json belongs to, from its folder under the work dir.

    ``<cfg>/shot<K>_seed<S>/results.json`` (the sweep layout) -> ``<cfg>``; another folder -> its path without a
    trailing ``_seed<S>`` (``tip-f_image_seed1`` -> ``tip-f_image``).
    """
    folder = osp.relpath(osp.dirname(osp.abspath(path)), osp.abspath(work_dir))
    if RUN_DIR.match(osp.basename(folder)):
        folder = osp.dirname(folder)
    else:
        folder = re.sub(r'[_-]?seed-?\d+$', '', folder)
    return folder if folder not in ('', '.') else ''


def label_and_dedupe(results: List[Result], work_dir: str = '') -> Tuple[List[Result], List[str]]:
    """Name the rows and keep one result per (backbone, row, dataset, shots, seed).

    A method's rows are split by experiment ('method [experiment]', see :func:`run_group`; the config name when
    the folder says nothing) when two experiments hold the same method, dataset, shots and seed: say
    Tip-Adapter-F trained from the feature bank in one sweep and from images in another. Otherwise all results
    of a method share its row. What still collides (the same run found twice) counts once: the newest file.
    """
    groups = {id(r): run_group(r.path, work_dir) or r.config if work_dir else r.config for r in results}
    groups_per_key = defaultdict(set)
    for r in results:
        groups_per_key[(r.backbone, r.method, r.dataset, r.shots, r.seed)].add(groups[id(r)])
    split = {(key[0], key[1]) for key, names in groups_per_key.items() if len(names) > 1}
    for r in results:
        r.label = f'{r.method} [{groups[id(r)]}]' if (r.backbone, r.method) in split else r.method
    kept, notes = {}, []
    for r in sorted(results, key=lambda r: r.mtime):
        key = (r.backbone, r.label, r.dataset, r.shots, r.seed)
        if key in kept:
            notes.append(f'{kept[key].path}: the same row, dataset, shots and seed as the newer {r.path}; ignored')
        kept[key] = r
    return list(kept.values()), notes


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


def _method_key(label: str):
    for i, name in enumerate(METHOD_ORDER):
        if label == name or label.startswith(name + ' ['):
            return (i, label)
    return (len(METHOD_ORDER), label)


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
        rows = sorted(rows_data, key=lambda row: (_method_key(row[0]), row[1]))
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


# ---------------------------------------------------------------------------------------------------------
# writing


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
    methods = sorted({label for label, _ in table.rows}, key=_method_key)
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


def plot_dataset(tables: List[Table], dataset: str, path: str) -> List[str]:
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
        for label in sorted({lab for lab, _ in table.rows}, key=_method_key):
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


# ---------------------------------------------------------------------------------------------------------
# command line


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Run configs x shots x seeds through tools/train.py (skipping runs that have a '
                    'results.json) and write report.md, report.csv and plots/ under the work dir')
    parser.add_argument('--configs', nargs='+', default=[], metavar='CFG', help='config files to sweep')
    parser.add_argument('--shots', nargs='+', type=int, default=[1, 2, 4, 8, 16], help='shots per class')
    parser.add_argument('--seeds', nargs='+', type=int, default=[1, 2, 3], help='few-shot sampling seeds')
    parser.add_argument('--work-dir', default='work_dirs/sweep',
                        help='runs go to WORK_DIR/<config stem>/shot<K>_seed<S>/, reports to WORK_DIR')
    parser.add_argument('--launcher', choices=['none', 'pytorch'], default='none',
                        help="'none': one process per run (tools/train.py); 'pytorch': tools/dist_train.sh")
    parser.add_argument('--gpus', type=int, default=1, help='processes per run with --launcher pytorch')
    parser.add_argument('--cfg-options', nargs='+', default=[], metavar='KEY=VALUE',
                        help='passed to every run (num_shots and fewshot_seed come from --shots/--seeds)')
    parser.add_argument('--dry-run', action='store_true', help='print what would run; run and write nothing')
    parser.add_argument('--report-only', action='store_true', help='only aggregate the results under the work dir')
    args = parser.parse_args(argv)
    if not args.report_only and not args.configs:
        parser.error('--configs is required unless --report-only is given')
    for option in args.cfg_options:
        if '=' not in option:
            parser.error(f'--cfg-options takes KEY=VALUE, got {option!r}')
        if option.split('=', 1)[0] in ('num_shots', 'fewshot_seed'):
            parser.error(f'{option!r}: give shots and seeds with --shots and --seeds')
    if any(k < 1 for k in args.shots):
        parser.error('--shots must be positive (zero-shot configs set num_shots = 0 themselves)')
    if args.gpus < 1:
        parser.error('--gpus must be at least 1')
    if args.launcher == 'none' and args.gpus > 1:
        parser.error('--gpus > 1 needs --launcher pytorch')
    missing = [c for c in args.configs if not osp.isfile(c)]
    if missing:
        parser.error(f'config file(s) not found: {missing}')
    return args


def sweep(argv=None, out=None) -> SweepSummary:
    """The sweep tool (command-line arguments as in ``tools/sweep.py``); returns what it did."""
    out = out or sys.stdout
    args = parse_args(argv)
    summary = SweepSummary()
    if not args.report_only:
        summary = run_sweep(args.configs, args.shots, args.seeds, args.work_dir, args.cfg_options,
                            args.launcher, args.gpus, args.dry_run, out)
        if args.dry_run:
            return summary
    summary.reports = write_reports(args.work_dir, out)
    if not args.report_only:
        print(f'\nsweep finished: {len(summary.ran)} run, {len(summary.skipped)} skipped, '
              f'{len(summary.failed)} failed', file=out)
        for run, code in summary.failed:
            reason = 'no results.json' if code == -1 else f'exit code {code}'
            print(f'  FAILED {run.name} ({reason}): {osp.join(run.work_dir, RUN_LOG)}', file=out)
    if summary.reports:
        print('reports:', file=out)
        for key, path in summary.reports.items():
            print(f'  {key}: {path}', file=out)
    out.flush()
    summary.exit_code = 1 if summary.failed or not (summary.reports or args.dry_run) else 0
    return summary


def main(argv=None, out=None) -> int:
    """Exit status of the sweep tool: 1 when a run failed or there was nothing to report, else 0."""
    return sweep(argv, out).exit_code
