"""``tip-adapter-sweep`` (also ``python -m tip_adapter_mm.sweep`` and ``tools/sweep.py``): the sweep's command
line.

    tip-adapter-sweep --configs CFG [CFG ...] --shots 1 2 4 8 16 --seeds 1 2 3 --work-dir work_dirs/sweep \\
        [--backbones RN50 ViT-B-16 ViT-B-16:laion2b_s34b_b88k ...] [--launcher none|pytorch --gpus N] \\
        [--cfg-options KEY=VALUE ...] [--dry-run] [--report-only]

Exit status: 0 when every planned run has a valid results.json (``--report-only``: when the report lists no
problem: no invalid results.json, no run folder without one) and a report was written; 1 otherwise; 128 + the
signal number (130: SIGINT, 143: SIGTERM) when interrupted, after the running run's processes are stopped.
"""
import argparse
import os.path as osp
import signal
import sys

from .report import report_problems, write_reports
from .runs import BACKBONE_KEYS, RUN_LOG, SweepSummary, parse_backbone, run_sweep


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Run configs x shots x seeds through tip-adapter-train (skipping runs that have a valid '
                    'results.json; an invalid one is moved aside and its run started again) and write report.md, '
                    'report.csv, report.tex, runs.csv (one row per run) and plots/ (PNG, PDF, SVG) under the work '
                    'dir. Exit status 1 when a run has no valid results.json '
                    '(--report-only: when the report lists problems)')
    parser.add_argument('--configs', nargs='+', default=[], metavar='CFG', help='config files to sweep')
    parser.add_argument('--shots', nargs='+', type=int, default=[1, 2, 4, 8, 16], help='shots per class')
    parser.add_argument('--seeds', nargs='+', type=int, default=[1, 2, 3], help='few-shot sampling seeds')
    parser.add_argument('--backbones', nargs='+', default=[], metavar='NAME[:TAG]',
                        help='the backbone axis: each open_clip model NAME (ViT-B-16, or OpenAI\'s ViT-B/16) with '
                             'an optional pretrained TAG (laion2b_s34b_b88k; default: the config\'s) becomes '
                             'model.backbone.model_name/pretrained of every run; its image size, mean/std and '
                             'feature size come from open_clip. Runs go to WORK_DIR/<backbone>/<config stem>/...; '
                             'default: the configs\' own backbone')
    parser.add_argument('--work-dir', default='work_dirs/sweep',
                        help='runs go to WORK_DIR/<config stem>/shot<K>_seed<S>/ (with --backbones: '
                             'WORK_DIR/<backbone>/<config stem>/shot<K>_seed<S>/), reports to WORK_DIR')
    parser.add_argument('--launcher', choices=['none', 'pytorch'], default='none',
                        help="'none': one process per run (python -m tip_adapter_mm.cli.train); 'pytorch': "
                             "--gpus processes per run (python -m torch.distributed.run, on $PORT or a free port)")
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
        if args.backbones and option.split('=', 1)[0] in BACKBONE_KEYS:
            parser.error(f'{option!r}: with --backbones, give the backbones there (NAME:TAG)')
    try:
        args.backbones = [parse_backbone(b) for b in args.backbones]
    except ValueError as e:
        parser.error(f'--backbones: {e}')
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
    """The sweep tool (command-line arguments as in ``tip-adapter-sweep``); returns what it did.

    Interrupted (SIGINT; SIGTERM or SIGHUP while runs execute), it stops the running run's processes and raises
    KeyboardInterrupt (:class:`.runs.SweepInterrupted`); :func:`main` turns that into an exit status.
    """
    out = out or sys.stdout
    args = parse_args(argv)
    summary = SweepSummary()
    if not args.report_only:
        summary = run_sweep(args.configs, args.shots, args.seeds, args.work_dir, args.cfg_options,
                            args.launcher, args.gpus, args.dry_run, out, args.backbones or (None, ))
        if args.dry_run:
            return summary
    summary.reports = write_reports(args.work_dir, out)
    problems = []
    if args.report_only:
        problems = report_problems(args.work_dir)
        if problems:
            print(f'report: {len(problems)} problem(s) (see report.md):', file=out)
            for problem in problems:
                print(f'  {problem}', file=out)
    else:
        print(f'\nsweep finished: {len(summary.ran)} run, {len(summary.skipped)} skipped, '
              f'{len(summary.failed)} failed', file=out)
        reasons = {run.work_dir: why for run, why in summary.incomplete}
        for run, code in summary.failed:
            reason = reasons.get(run.work_dir, 'no results.json') if code == -1 else f'exit code {code}'
            print(f'  FAILED {run.name} ({reason}): {osp.join(run.work_dir, RUN_LOG)}', file=out)
        failed = {run.work_dir for run, _ in summary.failed}
        for run, why in summary.incomplete:
            if run.work_dir not in failed:
                print(f'  MISSING {run.name} ({why}): {run.results_path}', file=out)
        if summary.incomplete:
            print(f'{len(summary.incomplete)} planned run(s) without a valid results.json: exit status 1', file=out)
    if summary.reports:
        print('reports:', file=out)
        for key, path in summary.reports.items():
            print(f'  {key}: {path}', file=out)
    out.flush()
    summary.exit_code = 1 if summary.failed or summary.incomplete or problems or not summary.reports else 0
    return summary


def main(argv=None, out=None) -> int:
    """Exit status of the sweep tool: 0 when complete; 1 when a planned run has no valid results.json
    (``--report-only``: the report lists problems) or there was nothing to report; 128 + signal number when
    interrupted (a message on stderr, no traceback)."""
    try:
        return sweep(argv, out).exit_code
    except KeyboardInterrupt as exc:
        signum = getattr(exc, 'signum', signal.SIGINT)
        name = signal.Signals(signum).name
        for stream in (out, sys.stdout):
            try:
                stream and stream.flush()
            except (OSError, ValueError):
                pass
        print(f'\ntip-adapter-sweep: interrupted by {name}; the running run (if any) and its processes were '
              'stopped. Finished runs keep their results.json: the same command resumes the sweep.',
              file=sys.stderr, flush=True)
        return 128 + signum
