"""Few-shot sweeps: run configs x shots x seeds through ``tip-adapter-train`` and report the results.

Every run is a separate process (``python -m tip_adapter_mm.cli.train``, or ``python -m torch.distributed.run
... -m tip_adapter_mm.cli.train`` with ``--launcher pytorch``), so one failure does not end the sweep, each run's
memory is freed, and an installed package needs no source tree. Run ``i`` of config ``C`` writes to
``<work_dir>/<stem of C>/shot<K>_seed<S>/`` (its output goes to ``sweep.log`` there); a run whose
``results.json`` exists is skipped, so an interrupted sweep resumes where it stopped. Configs with
``num_shots = 0`` (zero-shot CLIP) do not depend on the shots: they run once per seed, in ``shot0_seed<S>``.

The report step reads every ``results.json`` under the work dir and writes ``report.md`` and ``report.csv``
(rows: method and shots, columns: datasets, cells: mean ± sample std of test top-1 over seeds, and n) and
``plots/<dataset>.png`` (accuracy against shots on a log2 axis, one line per method with std error bars, and
the published RN50 numbers of :mod:`tip_adapter_mm.published` as dashed lines when the backbone is RN50).

    tip-adapter-sweep --configs configs/tip_digits_16shot.py configs/zeroshot_digits.py \\
        --shots 1 2 4 8 16 --seeds 1 2 3 --work-dir work_dirs/sweep
    tip-adapter-sweep --report-only --work-dir work_dirs/sweep

Modules: :mod:`.runs` (planning and executing runs), :mod:`.results` (collecting results.json, row labels),
:mod:`.report` (aggregation, Markdown and CSV), :mod:`.plots` (the PNGs), :mod:`.cli` (the command line).
"""
from .cli import main, parse_args, sweep
from .plots import plot_dataset
from .report import (AVERAGE, Cell, Table, aggregate, average_column, dataset_order, render_csv, render_markdown,
                     row_average, write_reports)
from .results import (METHOD_ORDER, RESULTS, RUN_DIR, Result, collect_results, config_stem, find_incomplete,
                      label_and_dedupe, load_json, method_key, run_group)
from .runs import (RUN_LOG, TRAIN_MODULE, Run, SweepSummary, execute, is_shot_independent, plan_runs, run_command,
                   run_sweep)

__all__ = [
    'AVERAGE', 'METHOD_ORDER', 'RESULTS', 'RUN_DIR', 'RUN_LOG', 'TRAIN_MODULE', 'Cell', 'Result', 'Run',
    'SweepSummary', 'Table', 'aggregate', 'average_column', 'collect_results', 'config_stem', 'dataset_order',
    'execute', 'find_incomplete', 'is_shot_independent', 'label_and_dedupe', 'load_json', 'main', 'method_key',
    'parse_args', 'plan_runs', 'plot_dataset', 'render_csv', 'render_markdown', 'row_average', 'run_command',
    'run_group', 'run_sweep', 'sweep', 'write_reports'
]
