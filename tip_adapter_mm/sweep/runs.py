"""Planning a sweep's runs and executing them, each in its own child process.

A run starts ``python -m tip_adapter_mm.cli.train`` (``tip-adapter-train``), or, with ``--launcher pytorch``,
``python -m torch.distributed.run ... -m tip_adapter_mm.cli.train``: the package's own entry points, so a sweep
needs no source tree (no ``tools/``).

A run counts as done when its folder holds a valid ``results.json`` (:func:`.results.read_results`); an invalid
one (not JSON, fields missing, NaN) is moved aside to ``results.json.invalid-<time>`` and the run starts again.
Each run's processes form their own process group (a new session): when the sweep is interrupted (SIGINT,
SIGTERM, SIGHUP) it stops that group (SIGTERM, then SIGKILL after :data:`STOP_GRACE_S` seconds) and raises
:class:`SweepInterrupted` (a :class:`KeyboardInterrupt`).
"""
import json
import os
import os.path as osp
import re
import shlex
import signal
import site
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple
from urllib.parse import urlparse
from urllib.request import url2pathname

from ..settings import is_zero_shot
from .results import RESULTS, config_stem, read_results

TRAIN_MODULE = 'tip_adapter_mm.cli.train'
RUN_LOG = 'sweep.log'
#: environment variables of tools/dist_train.sh that a distributed run passes on to torch.distributed.run
DIST_ENV_OPTIONS = (('NNODES', '--nnodes'), ('NODE_RANK', '--node_rank'), ('MASTER_ADDR', '--master_addr'))
#: seconds an interrupted run's processes get between SIGTERM and SIGKILL
STOP_GRACE_S = 10.
#: signals that interrupt a sweep besides SIGINT (where their handler is the default one: ``nohup`` stays)
INTERRUPT_SIGNALS = tuple(getattr(signal, name) for name in ('SIGTERM', 'SIGHUP') if hasattr(signal, name))


class SweepInterrupted(KeyboardInterrupt):
    """A sweep stopped by a signal (SIGTERM, SIGHUP); ``signum`` says which. SIGINT raises KeyboardInterrupt."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


#: ``--cfg-options`` keys that the backbones axis sets
BACKBONE_KEYS = ('model.backbone.model_name', 'model.backbone.pretrained')


def parse_backbone(value: str) -> Tuple[str, Optional[str]]:
    """``'NAME'`` or ``'NAME:TAG'`` (a value of ``--backbones``) -> ``(name, tag or None)``.

    NAME is an open_clip (``ViT-B-16``) or OpenAI (``ViT-B/16``) model name, TAG an open_clip pretrained tag
    (``laion2b_s34b_b88k``) or a local checkpoint file; without TAG the config's weights tag stays.
    """
    name, _, tag = str(value).partition(':')
    if not name.strip() or (_ and not tag.strip()):
        raise ValueError(f"a backbone is NAME or NAME:TAG (e.g. ViT-B-16:laion2b_s34b_b88k), got {value!r}")
    return name.strip(), tag.strip() or None


def backbone_slug(backbone: Tuple[str, Optional[str]]) -> str:
    """A folder name for a backbone: ``ViT-B-16_laion2b_s34b_b88k``, ``ViT-L-14-336px`` for ``ViT-L/14@336px``."""
    name, tag = backbone
    text = name if tag is None else f'{name}_{osp.splitext(osp.basename(tag))[0]}'
    return re.sub(r'[^\w.-]+', '-', text).strip('-') or 'backbone'


@dataclass
class Run:
    """One training run of a sweep; ``backbone`` (name, tag or None) overrides the config's, None keeps it."""
    config: str  # absolute path
    shots: int  # 0 for a config that uses no shots
    seed: int
    work_dir: str
    shot_independent: bool = False
    backbone: Optional[Tuple[str, Optional[str]]] = None

    @property
    def stem(self) -> str:
        return config_stem(self.config)

    @property
    def name(self) -> str:
        backbone = '' if self.backbone is None else \
            f' backbone={self.backbone[0]}' + (f':{self.backbone[1]}' if self.backbone[1] else '')
        return f'{self.stem}{backbone} shots={self.shots} seed={self.seed}'

    @property
    def results_path(self) -> str:
        return osp.join(self.work_dir, RESULTS)

    def train_args(self, cfg_options: Sequence[str] = ()) -> List[str]:
        """The arguments of ``tip-adapter-train`` (``tools/train.py``) for this run."""
        options = list(cfg_options)
        if self.backbone is not None:  # the backbone switch: the runner fills its preprocessing and feat_dim
            options.append(f'{BACKBONE_KEYS[0]}={self.backbone[0]}')
            if self.backbone[1]:
                options.append(f'{BACKBONE_KEYS[1]}={self.backbone[1]}')
        if not self.shot_independent:
            options.append(f'num_shots={self.shots}')
        options.append(f'fewshot_seed={self.seed}')
        return [self.config, '--work-dir', self.work_dir, '--cfg-options', *options]


@dataclass
class SweepSummary:
    """What a sweep did: the runs it started, skipped (valid results.json) and saw fail (with their exit codes;
    -1: exited with 0 but left no valid results.json), the invalid results.json it moved aside (run, why,
    where to), and the planned runs that have no valid results.json at the end (run, why)."""
    ran: List[Run] = field(default_factory=list)
    skipped: List[Run] = field(default_factory=list)
    failed: List[Tuple[Run, int]] = field(default_factory=list)
    retried: List[Tuple[Run, str, str]] = field(default_factory=list)
    incomplete: List[Tuple[Run, str]] = field(default_factory=list)
    reports: Dict[str, str] = field(default_factory=dict)
    exit_code: int = 0


def is_shot_independent(config: str) -> bool:
    """Whether a config uses no shots (``num_shots = 0``, i.e. zero-shot CLIP)."""
    try:
        from mmengine.config import Config
        cfg = Config.fromfile(config, import_custom_modules=False)
    except Exception:  # noqa: BLE001  (an unreadable config fails in its own run, with its own error)
        return False
    return is_zero_shot(cfg)


def plan_runs(configs: Sequence[str], shots: Sequence[int], seeds: Sequence[int], work_dir: str,
              backbones: Sequence[Optional[Tuple[str, Optional[str]]]] = (None, )) -> List[Run]:
    """Every backbone x config x shots x seeds, in that nesting order; shot-independent configs once per seed.

    Runs go to ``<work_dir>/<config stem>/shot<K>_seed<S>``, or, with a backbones axis,
    ``<work_dir>/<backbone slug>/<config stem>/shot<K>_seed<S>`` (:func:`backbone_slug`). A backbone of None is
    the config's own.
    """
    runs, seen = [], set()
    for backbone in backbones or (None, ):
        root = work_dir if backbone is None else osp.join(work_dir, backbone_slug(backbone))
        for config in configs:
            config = osp.abspath(config)
            independent = is_shot_independent(config)
            for k in ([0] if independent else shots):
                for seed in seeds:
                    run = Run(config, int(k), int(seed), osp.join(root, config_stem(config), f'shot{k}_seed{seed}'),
                              independent, backbone)
                    if run.work_dir not in seen:  # a config given twice, or repeated shots/seeds/backbones
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


def _group_alive(pgid: int) -> bool:
    """Whether a process group still has a process that is not a zombie."""
    if osp.isdir('/proc/self'):  # Linux: zombies (reaped late by init) do not count
        for entry in os.listdir('/proc'):
            if not entry.isdigit():
                continue
            try:
                with open(f'/proc/{entry}/stat') as f:
                    fields = f.read().rsplit(')', 1)[1].split()
            except (OSError, IndexError):
                continue
            if len(fields) > 2 and int(fields[2]) == pgid and fields[0] not in ('Z', 'X'):
                return True
        return False
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def _signal_group(pgid: int, signum: int):
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def stop_process_group(proc: subprocess.Popen, grace: Optional[float] = None):
    """Stop a run started by :func:`execute` and everything it started: SIGTERM to its process group, SIGKILL
    to what is left after ``grace`` seconds (:data:`STOP_GRACE_S`; at once on a second interrupt); return when
    the group has no live process left (or has been sent SIGKILL) and the run's own process is reaped."""
    grace = STOP_GRACE_S if grace is None else grace
    pgid = proc.pid  # the leader of its own session and process group (start_new_session=True)
    try:
        _signal_group(pgid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            proc.poll()  # reap the leader as soon as it exits
            if not _group_alive(pgid):
                break
            time.sleep(0.05)
    except KeyboardInterrupt:  # interrupted again while waiting: no more grace
        pass
    finally:
        proc.poll()
        if _group_alive(pgid):
            _signal_group(pgid, signal.SIGKILL)
        proc.wait()


@contextmanager
def interrupt_on_signals(signums: Sequence[int] = INTERRUPT_SIGNALS):
    """While in the block, the given signals raise :class:`SweepInterrupted` (instead of ending the process
    without clean-up), where their handler is the default one. Nothing changes outside the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise SweepInterrupted(signum)

    previous = {}
    for signum in signums:
        if signal.getsignal(signum) == signal.SIG_DFL:
            previous[signum] = signal.signal(signum, handler)
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def execute(run: Run, cfg_options: Sequence[str] = (), launcher: str = 'none', gpus: int = 1) -> int:
    """Start one run in a child process, its output going to ``<run dir>/sweep.log``; return its exit code.

    The run is a new session (its own process group): on any exception while it runs (KeyboardInterrupt,
    :class:`SweepInterrupted`) the group is stopped (:func:`stop_process_group`) before the exception goes on.
    A run that exits with 0 but leaves no valid results.json counts as failed (exit code -1 is reported).
    """
    argv, extra_env = run_command(run, cfg_options, launcher, gpus)
    os.makedirs(run.work_dir, exist_ok=True)
    log_path = osp.join(run.work_dir, RUN_LOG)
    with open(log_path, 'a') as log:
        log.write(f'# {time.strftime("%Y-%m-%d %H:%M:%S")} {shlex.join(argv)}\n')
        log.flush()
        proc = None
        try:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **extra_env},
                                    start_new_session=True)
            code = proc.wait()
        except BaseException as exc:
            if proc is not None:
                stop_process_group(proc)
                why = (exc.args[0] if isinstance(exc, SweepInterrupted) else
                       'SIGINT' if isinstance(exc, KeyboardInterrupt) else type(exc).__name__)
                log.write(f'\n# {time.strftime("%Y-%m-%d %H:%M:%S")} sweep interrupted ({why}): '
                          'stopped this run\n')
            raise
    if code == 0 and read_results(run.results_path)[1]:
        code = -1
    return code


def _move_aside(path: str) -> str:
    """Rename ``path`` to ``<path>.invalid-<time>`` (a name not yet taken); return the new name."""
    base = f'{path}.invalid-{time.strftime("%Y%m%d-%H%M%S")}'
    target, n = base, 1
    while osp.lexists(target):
        target, n = f'{base}-{n}', n + 1
    os.rename(path, target)
    return target


def run_sweep(configs: Sequence[str], shots: Sequence[int], seeds: Sequence[int], work_dir: str,
              cfg_options: Sequence[str] = (), launcher: str = 'none', gpus: int = 1, dry_run: bool = False,
              out=None, backbones: Sequence[Optional[Tuple[str, Optional[str]]]] = (None, )) -> SweepSummary:
    """Run (or, with ``dry_run``, list) every run without a valid results.json; print progress to ``out``.

    An invalid results.json is moved aside (``results.json.invalid-<time>``) and its run started again. At the
    end, ``summary.incomplete`` lists the planned runs that still have no valid results.json (not with
    ``dry_run``). SIGTERM and SIGHUP raise :class:`SweepInterrupted` while it runs (see :func:`execute`).
    ``backbones`` is the backbone axis (see :func:`plan_runs`).
    """
    out = out or sys.stdout
    work_dir = osp.abspath(work_dir)
    runs = plan_runs(configs, shots, seeds, work_dir, backbones)
    summary = SweepSummary()
    state = {r.work_dir: read_results(r.results_path) for r in runs}
    todo = [r for r in runs if state[r.work_dir][1]]
    invalid = [r for r in todo if osp.lexists(r.results_path)]
    print(f'sweep: {len(runs)} run(s) in {work_dir} ({len(runs) - len(todo)} done already, {len(todo)} to run'
          + (f', {len(invalid)} of them with an invalid {RESULTS}' if invalid else '') + ')', file=out, flush=True)
    with interrupt_on_signals():
        for i, run in enumerate(runs, 1):
            _one_run(run, f'[{i}/{len(runs)}] {run.name}', summary, cfg_options, launcher, gpus, dry_run, out)
    if not dry_run:
        for run in runs:
            problem = read_results(run.results_path)[1]
            if problem:
                summary.incomplete.append((run, problem))
    return summary


def _one_run(run: Run, prefix: str, summary: SweepSummary, cfg_options, launcher, gpus, dry_run, out):
    _, problem = read_results(run.results_path)
    if not problem:
        summary.skipped.append(run)
        print(f'{prefix}: skipped (valid {RESULTS})', file=out, flush=True)
        return
    invalid = osp.lexists(run.results_path)
    if dry_run:
        argv, env = run_command(run, cfg_options, launcher, gpus)
        env_prefix = ' '.join(f'{k}={shlex.quote(v)}' for k, v in env.items())
        aside = f'{RESULTS} is invalid ({problem}); would move it aside and run again: ' if invalid else ''
        print(f'{prefix}: {aside}would run: {env_prefix + " " if env_prefix else ""}{shlex.join(argv)}',
              file=out, flush=True)
        return
    if invalid:
        try:
            moved = _move_aside(run.results_path)
        except OSError as e:
            summary.failed.append((run, -1))
            print(f'{prefix}: {RESULTS} is invalid ({problem}) and cannot be moved aside ({e}); not run',
                  file=out, flush=True)
            return
        summary.retried.append((run, problem, moved))
        print(f'{prefix}: {RESULTS} is invalid ({problem}): moved to {osp.basename(moved)}; running again',
              file=out, flush=True)
    print(f'{prefix}: running ...', file=out, flush=True)
    start = time.perf_counter()
    try:
        code = execute(run, cfg_options, launcher, gpus)
    except KeyboardInterrupt as exc:
        name = exc.args[0] if isinstance(exc, SweepInterrupted) else 'SIGINT'
        print(f'{prefix}: interrupted ({name}) after {time.perf_counter() - start:.1f} s; its processes were '
              'stopped', file=out, flush=True)
        raise
    seconds = time.perf_counter() - start
    summary.ran.append(run)
    data, problem = read_results(run.results_path)
    if code == 0 and problem:  # changed since execute looked
        code = -1
    if code == 0:
        print(f'{prefix}: done in {seconds:.1f} s, test top-1 {data["test_top1"]:.2f}', file=out, flush=True)
    else:
        summary.failed.append((run, code))
        log_path = osp.join(run.work_dir, RUN_LOG)
        what = (f'exited with 0 but left no valid {RESULTS} ({problem})' if code == -1
                else f'failed (exit code {code})')
        print(f'{prefix}: {what} after {seconds:.1f} s; log: {log_path}\n' + _indent(_tail(log_path)), file=out,
              flush=True)


def _indent(text: str, prefix: str = '    | ') -> str:
    return ''.join(prefix + line + '\n' for line in text.rstrip('\n').splitlines()) if text.strip() else ''
