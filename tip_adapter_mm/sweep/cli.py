"""``tip-adapter-sweep`` (also ``python -m tip_adapter_mm.sweep`` and ``tools/sweep.py``): the sweep's command
line.

    tip-adapter-sweep --configs CFG [CFG ...] --shots 1 2 4 8 16 --seeds 1 2 3 --work-dir work_dirs/sweep \\
        [--launcher none|pytorch --gpus N] [--cfg-options KEY=VALUE ...] [--dry-run] [--report-only]
"""
import argparse
import os.path as osp
import sys

from .report import write_reports
from .runs import RUN_LOG, SweepSummary, run_sweep


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Run configs x shots x seeds through tip-adapter-train (skipping runs that have a '
                    'results.json) and write report.md, report.csv and plots/ under the work dir')
    parser.add_argument('--configs', nargs='+', default=[], metavar='CFG', help='config files to sweep')
    parser.add_argument('--shots', nargs='+', type=int, default=[1, 2, 4, 8, 16], help='shots per class')
    parser.add_argument('--seeds', nargs='+', type=int, default=[1, 2, 3], help='few-shot sampling seeds')
    parser.add_argument('--work-dir', default='work_dirs/sweep',
                        help='runs go to WORK_DIR/<config stem>/shot<K>_seed<S>/, reports to WORK_DIR')
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
    """The sweep tool (command-line arguments as in ``tip-adapter-sweep``); returns what it did."""
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
