"""Planning a sweep's runs and executing them, each in its own child process.

A run starts ``python -m tip_adapter_mm.cli.train`` (``tip-adapter-train``), or, with ``--launcher pytorch``,
``python -m torch.distributed.run ... -m tip_adapter_mm.cli.train``: the package's own entry points, so a sweep
needs no source tree (no ``tools/``).
"""
import json
import os
import os.path as osp
import shlex
import site
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Dict, List, Sequence, Tuple
from urllib.parse import urlparse
from urllib.request import url2pathname

from .results import RESULTS, config_stem, load_json

TRAIN_MODULE = 'tip_adapter_mm.cli.train'
RUN_LOG = 'sweep.log'
#: environment variables of tools/dist_train.sh that a distributed run passes on to torch.distributed.run
DIST_ENV_OPTIONS = (('NNODES', '--nnodes'), ('NODE_RANK', '--node_rank'), ('MASTER_ADDR', '--master_addr'))


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
        """The arguments of ``tip-adapter-train`` (``tools/train.py``) for this run."""
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


def _editable_install_of(folder: str) -> bool:
    """Whether an installed tip_adapter_mm distribution is an editable install of ``folder``."""
    from importlib.metadata import distributions
    for dist in distributions(name='tip_adapter_mm'):
        try:
            info = json.loads(dist.read_text('direct_url.json') or '{}')
        except ValueError:
            continue
        url = urlparse(str(info.get('url', '')))
        if info.get('dir_info', {}).get('editable') and url.scheme == 'file' and \
                osp.realpath(url2pathname(url.path)) == osp.realpath(folder):
            return True
    return False


def _child_env() -> Dict[str, str]:
    """The environment a run adds so that its processes import this copy of tip_adapter_mm.

    Empty for an installed copy (in site-packages, or an editable install of this checkout); a checkout that is
    only on ``sys.path`` goes on PYTHONPATH.
    """
    parent = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
    site_dirs = {osp.abspath(d) for d in site.getsitepackages() + [site.getusersitepackages()]}
    python_path = os.environ.get('PYTHONPATH', '')
    if parent in site_dirs or parent in python_path.split(os.pathsep) or _editable_install_of(parent):
        return {}
    return {'PYTHONPATH': os.pathsep.join(p for p in (parent, python_path) if p)}


def run_command(run: Run, cfg_options: Sequence[str] = (), launcher: str = 'none',
                gpus: int = 1) -> Tuple[List[str], Dict[str, str]]:
    """(argv, extra environment) that start a run.

    Args:
        run: the run.
        cfg_options: ``KEY=VALUE`` options for every run (the run adds num_shots and fewshot_seed).
        launcher: 'none': one process, ``python -m tip_adapter_mm.cli.train``; 'pytorch': ``gpus`` processes
            through ``python -m torch.distributed.run ... -m tip_adapter_mm.cli.train``, on port $PORT or, without
            it, a fresh free port ($NNODES, $NODE_RANK and $MASTER_ADDR are passed on where set).
        gpus: processes per run with ``launcher='pytorch'``.
    """
    args = run.train_args(cfg_options)
    env = _child_env()
    if launcher == 'none':
        return [sys.executable, '-m', TRAIN_MODULE, *args], env
    # a fresh port per run: the previous run's may still be in TIME_WAIT
    port = os.environ.get('PORT') or str(_free_port())
    dist = [opt for var, flag in DIST_ENV_OPTIONS if os.environ.get(var) for opt in (flag, os.environ[var])]
    return [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', str(gpus), '--master_port', port,
            *dist, '-m', TRAIN_MODULE, args[0], '--launcher', 'pytorch', *args[1:]], env


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
            top1 = load_json(run.results_path).get('test_top1')
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
