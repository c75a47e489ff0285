"""Few-shot sweeps: run configs x shots x seeds through ``tip-adapter-train`` and report the results.

Every run is a separate process (``python -m tip_adapter_mm.cli.train``, or ``python -m torch.distributed.run
... -m tip_adapter_mm.cli.train`` with ``--launcher pytorch``), so one failure does not end the sweep, each run's
memory is freed, and an installed package needs no source tree. Run ``i`` of config ``C`` writes to
``<work_dir>/<stem of C>/shot<K>_seed<S>/`` (its output goes to ``sweep.log`` there); a run whose
``results.json`` is valid (JSON, ``method``, ``num_shots``, ``seed`` and ``test_top1`` set, finite numbers) is
skipped, so an interrupted sweep resumes where it stopped; an invalid one is moved aside
(``results.json.invalid-<time>``) and the run starts again. Configs with ``num_shots = 0`` (zero-shot CLIP) do not
depend on the shots: they run once per seed, in ``shot0_seed<S>``. The sweep exits with 1 when a planned run has
no valid results.json at the end; interrupted (SIGINT, SIGTERM), it stops the running run's process group and
exits with 128 + the signal number.

The report step reads every ``results.json`` under the work dir and writes, with pandas, ``report.md``,
``report.csv`` and ``report.tex`` (rows: method and shots, columns: datasets, cells: mean ± sample std of test
top-1 over seeds, and n), ``runs.csv`` (one row per run, every field of its results.json) and
``plots/<dataset>.{png,pdf,svg}`` (accuracy against shots on a log2 axis, one line per method with std error bars
offset so that methods never hide each other, and the published RN50 numbers of :mod:`tip_adapter_mm.published`
as dashed lines when the backbone is RN50).

    tip-adapter-sweep --configs configs/tip_digits_16shot.py configs/zeroshot_digits.py \\
        --shots 1 2 4 8 16 --seeds 1 2 3 --work-dir work_dirs/sweep
    tip-adapter-sweep --configs configs/tip_dtd_16shot.py --backbones RN50 ViT-B-16 ViT-B-16:laion2b_s34b_b88k \\
        --shots 1 2 4 8 16 --seeds 1 2 3 --work-dir work_dirs/sweep
    tip-adapter-sweep --report-only --work-dir work_dirs/sweep

The backbone axis (``--backbones NAME[:TAG] ...``) runs every config with each backbone as the override
``model.backbone.model_name=NAME model.backbone.pretrained=TAG`` (the runner takes the image size, mean/std and
feature size from open_clip), in ``<work_dir>/<backbone>/<config stem>/shot<K>_seed<S>/``; the report has one
table per backbone (``backbone`` column of report.csv; ``NAME (TAG)`` for weights other than OpenAI's). The
feature store keys features by backbone, so each image is encoded once per backbone.

Modules: :mod:`.runs` (planning and executing runs), :mod:`.results` (collecting results.json, row labels),
:mod:`.report` (aggregation, Markdown and CSV), :mod:`.plots` (the PNGs), :mod:`.cli` (the command line).
"""
from .cli import main, parse_args, sweep
from .plots import plot_dataset
from .report import (AVERAGE, Cell, Table, aggregate, average_column, dataset_order, render_csv, render_markdown,
                     report_problems, row_average, write_reports)
from .results import (METHOD_ORDER, REQUIRED_FIELDS, RESULTS, RUN_DIR, Result, check_record, collect_results,
                      config_stem, find_incomplete, label_and_dedupe, load_json, method_key, read_results, run_group)
from .runs import (RUN_LOG, STOP_GRACE_S, TRAIN_MODULE, Run, SweepInterrupted, SweepSummary, execute,
                   interrupt_on_signals, is_shot_independent, plan_runs, run_command, run_sweep, stop_process_group)

__all__ = [
    'AVERAGE', 'METHOD_ORDER', 'REQUIRED_FIELDS', 'RESULTS', 'RUN_DIR', 'RUN_LOG', 'STOP_GRACE_S', 'TRAIN_MODULE',
    'Cell', 'Result', 'Run', 'SweepInterrupted', 'SweepSummary', 'Table', 'aggregate', 'average_column',
    'check_record', 'collect_results', 'config_stem', 'dataset_order', 'execute', 'find_incomplete',
    'interrupt_on_signals', 'is_shot_independent', 'label_and_dedupe', 'load_json', 'main', 'method_key',
    'parse_args', 'plan_runs', 'plot_dataset', 'read_results', 'render_csv', 'render_markdown', 'report_problems',
    'row_average', 'run_command', 'run_group', 'run_sweep', 'stop_process_group', 'sweep', 'write_reports'
]
