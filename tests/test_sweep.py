"""tip_adapter_mm.sweep (tip-adapter-sweep, tools/sweep.py): runs configs x shots x seeds, resumes, and aggregates
results.json into reports and plots."""
import csv
import io
import json
import os
import os.path as osp
import re
import shutil
import statistics
import subprocess
import sys

import pytest
from conftest import ROOT, demo_options

from tip_adapter_mm.published import LABEL, PAPER_DATASETS, PUBLISHED, dataset_mean, published
from tip_adapter_mm.sweep import (Result, Run, aggregate, label_and_dedupe, main, plot_dataset, run_command, sweep,
                                  write_reports)
from tip_adapter_mm.utils import atomic_json_dump

CONFIGS = [osp.join(ROOT, 'configs', 'tip_digits_16shot.py'), osp.join(ROOT, 'configs', 'zeroshot_digits.py')]
SHOTS, SEEDS = (2, 4), (1, 2)
PNG_MAGIC = b'\x89PNG\r\n\x1a\n'


def _argv(work_dir, assets, configs=CONFIGS, shots=SHOTS, seeds=SEEDS, extra=(), **overrides):
    return ['--configs', *configs, '--shots', *map(str, shots), '--seeds', *map(str, seeds),
            '--work-dir', str(work_dir), *extra, '--cfg-options', *demo_options(assets, **overrides)]


def _results(work_dir):
    found = {}
    for folder, _, files in os.walk(work_dir):
        if 'results.json' in files:
            with open(osp.join(folder, 'results.json')) as f:
                found[osp.relpath(folder, work_dir)] = json.load(f)
    return found


def _csv_rows(work_dir):
    with open(osp.join(work_dir, 'report.csv'), newline='') as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope='module')
def demo_sweep(demo_assets, tmp_path_factory):
    """Tip-Adapter x shots 2, 4 x seeds 1, 2 and zero-shot CLIP x seeds 1, 2 on the demo: 6 runs."""
    work_dir = tmp_path_factory.mktemp('sweep')
    argv = _argv(work_dir, demo_assets)
    out = io.StringIO()
    summary = sweep(argv, out)
    return str(work_dir), argv, summary, out.getvalue()


@pytest.mark.slow
def test_demo_sweep_runs_every_combination(demo_sweep):
    work_dir, _, summary, output = demo_sweep
    assert summary.exit_code == 0, output
    assert not summary.failed and not summary.skipped
    expected = {f'tip_digits_16shot/shot{k}_seed{s}' for k in SHOTS for s in SEEDS}
    expected |= {f'zeroshot_digits/shot0_seed{s}' for s in SEEDS}  # zero-shot: once per seed
    assert {osp.relpath(r.work_dir, work_dir) for r in summary.ran} == expected
    results = _results(work_dir)
    assert set(results) == expected
    for folder, record in results.items():
        stem, run = folder.split('/')
        shots, seed = (int(v) for v in run[len('shot'):].split('_seed'))
        assert record['seed'] == seed and record['num_shots'] == shots
        assert record['method'] == ('Zero-shot CLIP' if stem == 'zeroshot_digits' else 'Tip-Adapter')
        assert record['dataset'] == 'digits'
        assert osp.isfile(osp.join(work_dir, folder, 'sweep.log'))  # the run's output
    assert '[6/6]' in output and 'sweep finished: 6 run, 0 skipped, 0 failed' in output
    assert osp.join(work_dir, 'report.md') in output and osp.join(work_dir, 'plots', 'digits.png') in output


@pytest.mark.slow
def test_second_invocation_skips_finished_runs(demo_sweep):
    work_dir, argv, _, _ = demo_sweep
    before = {f: osp.getmtime(osp.join(work_dir, f, 'results.json')) for f in _results(work_dir)}
    logs_before = {f: sorted(os.listdir(osp.join(work_dir, f))) for f in before}
    out = io.StringIO()
    summary = sweep(argv, out)
    assert summary.exit_code == 0
    assert not summary.ran and not summary.failed and len(summary.skipped) == 6
    assert 'sweep finished: 0 run, 6 skipped, 0 failed' in out.getvalue()
    assert {f: osp.getmtime(osp.join(work_dir, f, 'results.json')) for f in before} == before
    assert {f: sorted(os.listdir(osp.join(work_dir, f))) for f in before} == logs_before  # nothing started


@pytest.mark.slow
def test_report_rows_columns_and_statistics(demo_sweep):
    work_dir = demo_sweep[0]
    results = _results(work_dir)
    expected = {}
    for record in results.values():
        key = (record['method'], record['num_shots'])
        expected.setdefault(key, []).append(record['test_top1'])
    assert set(expected) == {('Zero-shot CLIP', 0), ('Tip-Adapter', 2), ('Tip-Adapter', 4)}

    rows = _csv_rows(work_dir)
    assert list(rows[0]) == ['backbone', 'method', 'shots', 'digits mean', 'digits std', 'digits n']
    assert [(r['method'], int(r['shots'])) for r in rows] == [('Zero-shot CLIP', 0), ('Tip-Adapter', 2),
                                                              ('Tip-Adapter', 4)]
    with open(osp.join(work_dir, 'report.md')) as f:
        md = f.read()
    assert '| method | shots | digits |' in md
    assert 'average' not in [c.split(' ')[0] for c in rows[0]]  # a single dataset gets no average column
    for row in rows:
        values = expected[(row['method'], int(row['shots']))]
        mean, std = statistics.fmean(values), statistics.stdev(values)
        assert row['backbone'] == 'tiny-clip' and int(row['digits n']) == len(SEEDS)
        assert float(row['digits mean']) == pytest.approx(mean, abs=1e-4)
        assert float(row['digits std']) == pytest.approx(std, abs=1e-4)
        assert f"| {row['method']} | {row['shots']} | {mean:.2f} ± {std:.2f} (n={len(SEEDS)}) |" in md


@pytest.mark.slow
def test_plot_is_a_png_written_by_matplotlib(demo_sweep):
    import matplotlib.image
    path = osp.join(demo_sweep[0], 'plots', 'digits.png')
    with open(path, 'rb') as f:
        assert f.read(8) == PNG_MAGIC
    assert osp.getsize(path) > 10_000
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 300 and image.shape[1] > 400
    # the figure holds the sweep's series: drawn again from its results, the plot has one series per method
    # (zero-shot CLIP, which uses no shots, as a level line) and colored pixels, not an empty canvas
    from tip_adapter_mm.sweep.results import collect_results
    results, _ = collect_results(demo_sweep[0])
    labels = plot_dataset(aggregate(label_and_dedupe(results)[0]), 'digits', osp.join(demo_sweep[0], 'again.png'))
    assert 'Tip-Adapter' in labels and 'Zero-shot CLIP (no shots)' in labels, labels
    rgb = image[..., :3]
    colored = (rgb.max(axis=-1) - rgb.min(axis=-1)) > 0.2  # not white, gray or black
    assert colored.mean() > 0.002
    assert image[..., :3].std() > 0.05  # lines, text and axes, not a blank canvas
    assert not [f for f in os.listdir(osp.dirname(path)) if f.endswith('.tmp')]


@pytest.mark.slow
def test_report_only_command_line(demo_sweep, tmp_path):
    work_dir = demo_sweep[0]
    os.remove(osp.join(work_dir, 'report.csv'))
    proc = subprocess.run([sys.executable, osp.join(ROOT, 'tools', 'sweep.py'), '--report-only', '--work-dir',
                           work_dir], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert 'csv: ' + osp.join(work_dir, 'report.csv') in proc.stdout
    assert len(_csv_rows(work_dir)) == 3
    assert 'running' not in proc.stdout
    # nothing to report: exit status 1, no files
    assert main(['--report-only', '--work-dir', str(tmp_path)], io.StringIO()) == 1
    assert not os.listdir(tmp_path)


@pytest.mark.slow
def test_console_script_outside_the_repository(demo_sweep, tmp_path):
    """tip-adapter-sweep, the installed console script, started in a folder outside the repository."""
    script = osp.join(osp.dirname(sys.executable), 'tip-adapter-sweep')
    assert osp.isfile(script), f'{script} is missing: `pip install -e .` installs the console scripts'
    work_dir = str(tmp_path / 'results')
    shutil.copytree(demo_sweep[0], work_dir, ignore=shutil.ignore_patterns('report.*', 'plots'))
    assert not osp.exists(osp.join(work_dir, 'report.md'))
    cwd = tmp_path / 'elsewhere'
    cwd.mkdir()
    assert not osp.realpath(cwd).startswith(osp.realpath(ROOT) + os.sep)
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    proc = subprocess.run([script, '--report-only', '--work-dir', work_dir], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    for key, name in (('md', 'report.md'), ('csv', 'report.csv'), ('digits', osp.join('plots', 'digits.png'))):
        assert f'{key}: {osp.join(work_dir, name)}' in proc.stdout
    assert 'running' not in proc.stdout
    assert _csv_rows(work_dir) == _csv_rows(demo_sweep[0])  # the same report as the sweep's own
    with open(osp.join(work_dir, 'report.md')) as f:
        md = f.read()
    assert f'Work dir: `{work_dir}` (6 results.json)' in md and '| method | shots | digits |' in md
    with open(osp.join(work_dir, 'plots', 'digits.png'), 'rb') as f:
        assert f.read(8) == PNG_MAGIC
    assert not os.listdir(cwd)  # nothing written where it was started


def test_dry_run_starts_nothing(demo_assets, tmp_path):
    out = io.StringIO()
    summary = sweep(_argv(tmp_path / 'sweep', demo_assets, shots=(1, 8), seeds=(3,), extra=['--dry-run']), out)
    assert summary.exit_code == 0 and not summary.ran
    assert not osp.exists(tmp_path / 'sweep')
    lines = [line for line in out.getvalue().splitlines() if 'would run' in line]
    assert len(lines) == 3
    assert 'num_shots=1 fewshot_seed=3' in lines[0] and 'num_shots=8 fewshot_seed=3' in lines[1]
    assert 'zeroshot_digits.py' in lines[2] and 'num_shots' not in lines[2]


def test_dry_run_distributed_command(demo_assets, tmp_path):
    out = io.StringIO()
    sweep(_argv(tmp_path, demo_assets, configs=CONFIGS[:1], shots=(2,), seeds=(1,),
                extra=['--dry-run', '--launcher', 'pytorch', '--gpus', '2']), out)
    line = next(line for line in out.getvalue().splitlines() if 'would run' in line)
    assert f'would run: {sys.executable} -m torch.distributed.run --nproc_per_node 2 --master_port ' in line
    assert f' -m tip_adapter_mm.cli.train {CONFIGS[0]} --launcher pytorch --work-dir' in line
    assert osp.join(ROOT, 'tools') not in line


def test_run_command_starts_the_package_modules(tmp_path, monkeypatch):
    """Both launchers start tip_adapter_mm.cli.train as a module of this interpreter: nothing from tools/."""
    for var in ('PORT', 'NNODES', 'NODE_RANK', 'MASTER_ADDR'):
        monkeypatch.delenv(var, raising=False)
    run = Run(CONFIGS[0], 2, 1, str(tmp_path / 'run'))
    train_args = ['--work-dir', str(tmp_path / 'run'), '--cfg-options', 'a=1', 'num_shots=2', 'fewshot_seed=1']
    argv, env = run_command(run, ['a=1'])
    assert argv == [sys.executable, '-m', 'tip_adapter_mm.cli.train', CONFIGS[0], *train_args]
    commands = [argv]

    argv, dist_env = run_command(run, ['a=1'], 'pytorch', 2)
    assert dist_env == env
    assert argv[:6] == [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2', '--master_port']
    assert 0 < int(argv[6]) < 65536  # a free port
    assert argv[7:] == ['-m', 'tip_adapter_mm.cli.train', CONFIGS[0], '--launcher', 'pytorch', *train_args]
    commands.append(argv)

    monkeypatch.setenv('PORT', '29517')
    monkeypatch.setenv('NNODES', '2')
    argv = run_command(run, ['a=1'], 'pytorch', 4)[0]
    assert argv[3:9] == ['--nproc_per_node', '4', '--master_port', '29517', '--nnodes', '2']
    assert argv[9:11] == ['-m', 'tip_adapter_mm.cli.train']
    commands.append(argv)
    for argv in commands:
        assert not any(osp.join(ROOT, 'tools') in a or a.endswith(('.sh', 'train.py')) for a in argv), argv

    # the environment a run adds lets its processes import this copy of the package, from any folder
    probe = [sys.executable, '-c', 'import importlib.util; print(importlib.util.find_spec("tip_adapter_mm").origin)']
    base = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    proc = subprocess.run(probe, cwd=tmp_path, env={**base, **env}, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    import tip_adapter_mm
    assert osp.realpath(proc.stdout.strip()) == osp.realpath(tip_adapter_mm.__file__)


@pytest.mark.slow
def test_distributed_run(demo_assets, tmp_path, monkeypatch):
    monkeypatch.setenv('OMP_NUM_THREADS', '1')
    summary = sweep(_argv(tmp_path, demo_assets, configs=CONFIGS[:1], shots=(2,), seeds=(1,),
                          extra=['--launcher', 'pytorch', '--gpus', '2']), io.StringIO())
    assert summary.exit_code == 0 and len(summary.ran) == 1
    record = _results(tmp_path)['tip_digits_16shot/shot2_seed1']
    assert record['world_size'] == 2 and record['num_shots'] == 2 and record['seed'] == 1


@pytest.mark.parametrize('option', ['num_shots=8', 'fewshot_seed=2'])
def test_shots_and_seeds_only_through_their_arguments(tmp_path, option):
    with pytest.raises(SystemExit):
        main(['--configs', CONFIGS[0], '--work-dir', str(tmp_path), '--cfg-options', option])


@pytest.mark.slow
def test_failed_run_is_reported_and_the_sweep_goes_on(demo_assets, tmp_path):
    out = io.StringIO()
    argv = _argv(tmp_path, demo_assets, CONFIGS[:1], (1,), (1, 2),
                 **{'model.backbone.pretrained': str(tmp_path / 'missing.pt')})
    summary = sweep(argv, out)
    output = out.getvalue()
    assert summary.exit_code == 1
    assert len(summary.ran) == 2 and len(summary.failed) == 2  # the first failure did not stop the sweep
    assert all(code not in (0, -1) for _, code in summary.failed)
    assert 'sweep finished: 2 run, 0 skipped, 2 failed' in output and output.count('FAILED') == 2
    assert 'missing.pt' in output  # the tail of the run's log
    assert not _results(tmp_path)
    # a report over what exists lists the runs without results
    atomic_json_dump(dict(method='Tip-Adapter', dataset='digits', num_shots=1, seed=3, backbone='tiny-clip',
                          test_top1=50.), str(tmp_path / 'other' / 'results.json'))
    write_reports(str(tmp_path), io.StringIO())
    with open(tmp_path / 'report.md') as f:
        md = f.read()
    assert 'Runs without results.json' in md
    assert str(tmp_path / 'tip_digits_16shot' / 'shot1_seed2') in md


# ----------------------------------------------------------------------------------------------------------
# results.json validation, exit status and interrupts, with fake runs (no training)

RECORD = dict(method='Tip-Adapter', dataset='digits', num_shots=2, seed=1, backbone='tiny-clip', test_top1=61.5,
              timings=dict(total=1.5))
#: a fake run: writes a valid results.json for its shots and seed (argv: run dir, shots, seed)
WRITE_RESULTS = '\n'.join([
    'import json, os, sys',
    'record = dict(method="Tip-Adapter", dataset="digits", num_shots=int(sys.argv[2]), seed=int(sys.argv[3]),',
    '              backbone="tiny-clip", test_top1=70. + int(sys.argv[3]))',
    'with open(os.path.join(sys.argv[1], "results.json"), "w") as f:',
    '    json.dump(record, f)',
    'print("fake run done")'])


def _fake_runs(monkeypatch, script):
    """Every run of the sweep starts ``python -c script RUN_DIR SHOTS SEED`` instead of training."""
    from tip_adapter_mm.sweep import runs
    monkeypatch.setattr(runs, 'run_command', lambda run, *args, **kwargs: (
        [sys.executable, '-c', script, run.work_dir, str(run.shots), str(run.seed)], {}))


def _fake_argv(work_dir, seeds=(1, 2), extra=()):
    return ['--configs', CONFIGS[0], '--shots', '2', '--seeds', *map(str, seeds), '--work-dir', str(work_dir),
            *extra]


def _run_dir(work_dir, seed, shots=2):
    return osp.join(str(work_dir), 'tip_digits_16shot', f'shot{shots}_seed{seed}')


def _without(key):
    return json.dumps({k: v for k, v in RECORD.items() if k != key})


INVALID = {  # id: (content of results.json, or None for a directory in its place; the reason given)
    'truncated': ('{"method": "Tip-Adapter", "num_shots": 2, "test_top1": 6', 'not JSON'),
    'empty': ('', 'empty file'),
    'binary': (b'\xff\xfe\x00\x81', 'not JSON'),
    'list': ('[61.5]', 'not a JSON object'),
    'no-test_top1': (_without('test_top1'), 'missing test_top1'),
    'no-method': (_without('method'), 'missing method'),
    'no-num_shots': (_without('num_shots'), 'missing num_shots'),
    'no-seed': (_without('seed'), 'missing seed'),
    'null-test_top1': (json.dumps({**RECORD, 'test_top1': None}), 'missing test_top1'),
    'nan-test_top1': (json.dumps({**RECORD, 'test_top1': float('nan')}), 'non-finite number in test_top1'),
    'inf-timing': (json.dumps({**RECORD, 'timings': {'total': float('inf')}}), 'non-finite number in timings.total'),
    'text-test_top1': (json.dumps({**RECORD, 'test_top1': '61.5'}), 'test_top1 is not an accuracy'),
    'fraction-test_top1': (json.dumps({**RECORD, 'test_top1': 615.}), 'test_top1 is not an accuracy'),
    'directory': (None, 'unreadable'),
}


def _put(path, content):
    os.makedirs(osp.dirname(path), exist_ok=True)
    if content is None:
        os.makedirs(path)
        return
    with open(path, 'wb') as f:
        f.write(content if isinstance(content, bytes) else content.encode())


@pytest.mark.parametrize('case', list(INVALID))
def test_invalid_results_json_is_moved_aside_and_run_again(tmp_path, monkeypatch, case):
    content, reason = INVALID[case]
    path = osp.join(_run_dir(tmp_path, 2), 'results.json')
    _put(path, content)
    atomic_json_dump(RECORD, osp.join(_run_dir(tmp_path, 1), 'results.json'))  # valid: skipped
    _fake_runs(monkeypatch, WRITE_RESULTS)
    out = io.StringIO()
    summary = sweep(_fake_argv(tmp_path), out)
    output = out.getvalue()
    assert summary.exit_code == 0, output
    assert [osp.basename(r.work_dir) for r in summary.ran] == ['shot2_seed2']  # run again, not skipped
    assert [osp.basename(r.work_dir) for r in summary.skipped] == ['shot2_seed1']
    assert not summary.failed and not summary.incomplete
    assert '(1 done already, 1 to run, 1 of them with an invalid results.json)' in output
    # moved aside, under a new name, not deleted
    aside = [f for f in os.listdir(_run_dir(tmp_path, 2)) if f.startswith('results.json.invalid-')]
    assert len(aside) == 1 and re.fullmatch(r'results\.json\.invalid-\d{8}-\d{6}(-\d+)?', aside[0]), aside
    line = next(line for line in output.splitlines() if 'seed=2: results.json is invalid' in line)
    assert reason in line and f'moved to {aside[0]}; running again' in line
    moved = osp.join(_run_dir(tmp_path, 2), aside[0])
    if content is None:
        assert osp.isdir(moved)
    else:
        with open(moved, 'rb') as f:
            assert f.read() == (content if isinstance(content, bytes) else content.encode())
    assert _results(tmp_path)['tip_digits_16shot/shot2_seed2']['test_top1'] == 72.
    # the report counts the run's new results.json, not the one moved aside
    assert float(_csv_rows(tmp_path)[0]['digits mean']) == pytest.approx(statistics.fmean([61.5, 72.]))
    from tip_adapter_mm.sweep import read_results
    assert reason in read_results(moved)[1]
    assert read_results(osp.join(_run_dir(tmp_path, 1), 'results.json')) == (RECORD, None)


def test_dry_run_lists_an_invalid_results_json_and_moves_nothing(tmp_path, monkeypatch):
    path = osp.join(_run_dir(tmp_path, 1), 'results.json')
    _put(path, _without('test_top1'))
    _fake_runs(monkeypatch, WRITE_RESULTS)
    out = io.StringIO()
    summary = sweep(_fake_argv(tmp_path, seeds=(1,), extra=['--dry-run']), out)
    assert summary.exit_code == 0 and not summary.ran and not summary.skipped
    assert 'results.json is invalid (missing test_top1); would move it aside and run again' in out.getvalue()
    assert os.listdir(_run_dir(tmp_path, 1)) == ['results.json']


def test_run_that_leaves_an_invalid_results_json_fails_the_sweep(tmp_path, monkeypatch):
    """Exit status 0 of a run is not enough: without a valid results.json the sweep exits with 1, naming it."""
    _fake_runs(monkeypatch, WRITE_RESULTS.replace('test_top1=70. + int(sys.argv[3])', 'test_top5=90.'))
    out = io.StringIO()
    summary = sweep(_fake_argv(tmp_path), out)
    output = out.getvalue()
    assert summary.exit_code == 1, output
    assert len(summary.ran) == 2 and [code for _, code in summary.failed] == [-1, -1]
    assert [why for _, why in summary.incomplete] == ['missing test_top1'] * 2
    assert 'sweep finished: 2 run, 0 skipped, 2 failed' in output and output.count('FAILED') == 2
    assert f"FAILED tip_digits_16shot shots=2 seed=1 (missing test_top1): {_run_dir(tmp_path, 1)}" in output
    assert 'exited with 0 but left no valid results.json (missing test_top1)' in output
    assert '2 planned run(s) without a valid results.json: exit status 1' in output
    assert main(_fake_argv(tmp_path), io.StringIO()) == 1  # again: retried (moved aside), failing again
    assert len([f for f in os.listdir(_run_dir(tmp_path, 1)) if f.startswith('results.json.invalid-')]) == 1

    # no results.json at all
    _fake_runs(monkeypatch, 'print("nothing written")')
    out = io.StringIO()
    summary = sweep(_fake_argv(tmp_path / 'none', seeds=(1,)), out)
    assert summary.exit_code == 1 and [why for _, why in summary.incomplete] == ['no results.json']
    assert 'FAILED tip_digits_16shot shots=2 seed=1 (no results.json)' in out.getvalue()


def test_planned_run_without_results_at_the_end_fails_the_sweep(tmp_path, monkeypatch):
    """A run skipped at the start whose results.json is gone at the end (here: removed by the next run)."""
    atomic_json_dump(RECORD, osp.join(_run_dir(tmp_path, 1), 'results.json'))
    _fake_runs(monkeypatch, WRITE_RESULTS + f'\nos.remove({osp.join(_run_dir(tmp_path, 1), "results.json")!r})')
    out = io.StringIO()
    summary = sweep(_fake_argv(tmp_path), out)
    output = out.getvalue()
    assert summary.exit_code == 1, output
    assert len(summary.skipped) == 1 and len(summary.ran) == 1 and not summary.failed
    assert [(r.seed, why) for r, why in summary.incomplete] == [(1, 'no results.json')]
    assert 'MISSING tip_digits_16shot shots=2 seed=1 (no results.json)' in output
    assert '1 planned run(s) without a valid results.json: exit status 1' in output


def test_report_only_exit_status_follows_the_problems_it_lists(tmp_path):
    for seed in (1, 2):
        atomic_json_dump({**RECORD, 'seed': seed}, osp.join(_run_dir(tmp_path, seed), 'results.json'))
    out = io.StringIO()
    assert main(['--report-only', '--work-dir', str(tmp_path)], out) == 0, out.getvalue()  # complete
    assert 'problem' not in out.getvalue()

    corrupt = osp.join(_run_dir(tmp_path, 3), 'results.json')
    _put(corrupt, '{"method": "Tip-Adapter", "num_')
    os.remove(tmp_path / 'report.md')
    out = io.StringIO()
    assert main(['--report-only', '--work-dir', str(tmp_path)], out) == 1
    output = out.getvalue()
    assert 'report: 1 problem(s)' in output and f'{corrupt}: not JSON' in output
    assert f'md: {tmp_path / "report.md"}' in output  # the report is still written, from what is there
    with open(tmp_path / 'report.md') as f:
        md = f.read()
    assert 'Files not counted' in md and corrupt in md and '(n=2)' in md
    assert osp.isfile(corrupt)  # --report-only moves nothing

    os.remove(corrupt)  # a run folder without results.json: failed, interrupted or still running
    out = io.StringIO()
    assert main(['--report-only', '--work-dir', str(tmp_path)], out) == 1
    assert f'{_run_dir(tmp_path, 3)}: no results.json' in out.getvalue()
    os.rmdir(_run_dir(tmp_path, 3))
    assert main(['--report-only', '--work-dir', str(tmp_path)], io.StringIO()) == 0


#: the sweep's process in the interrupt tests: runs are `python -c CHILD RUN_DIR`, stopped after GRACE seconds
SWEEP_DRIVER = """
import signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)  # a background job may have inherited SIGINT ignored
from tip_adapter_mm.sweep import cli, runs
child, runs.STOP_GRACE_S = sys.argv[1], float(sys.argv[2])
runs.run_command = lambda run, *args, **kwargs: ([sys.executable, '-c', child, run.work_dir], {})
sys.exit(cli.main(sys.argv[3:]))
"""
#: a run that starts a process of its own, writes both pids to RUN_DIR/pids and sleeps
SLEEPING_RUN = """
import os, signal, subprocess, sys, time
if IGNORE_SIGTERM:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # inherited by its own process too
grandchild = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])
with open(os.path.join(sys.argv[1], 'pids.tmp'), 'w') as f:
    f.write(f'{os.getpid()} {grandchild.pid}')
os.rename(os.path.join(sys.argv[1], 'pids.tmp'), os.path.join(sys.argv[1], 'pids'))
time.sleep(60)
"""


def _alive(pid):
    """Whether a process exists and is not a zombie."""
    try:
        with open(f'/proc/{pid}/stat') as f:
            return f.read().rsplit(')', 1)[1].split()[0] not in ('Z', 'X')
    except (FileNotFoundError, ProcessLookupError):
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


@pytest.mark.skipif(sys.platform == 'win32', reason='process groups and signals: POSIX')
@pytest.mark.parametrize('signame,ignore_sigterm', [('SIGINT', False), ('SIGTERM', False), ('SIGTERM', True)],
                         ids=['SIGINT', 'SIGTERM', 'SIGTERM-ignored-by-the-run'])
def test_interrupted_sweep_stops_its_runs(tmp_path, signame, ignore_sigterm):
    import signal
    import time
    signum = getattr(signal, signame)
    driver = tmp_path / 'driver.py'
    driver.write_text(SWEEP_DRIVER)
    child = SLEEPING_RUN.replace('IGNORE_SIGTERM', str(ignore_sigterm))
    work_dir = tmp_path / 'sweep'
    env = {**os.environ, 'PYTHONPATH': os.pathsep.join(p for p in (ROOT, os.environ.get('PYTHONPATH')) if p)}
    proc = subprocess.Popen([sys.executable, str(driver), child, '1.5', *_fake_argv(work_dir)], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pids = []
    try:
        pid_file = osp.join(_run_dir(work_dir, 1), 'pids')
        deadline = time.monotonic() + 120
        while not osp.exists(pid_file) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert osp.exists(pid_file), proc.communicate(timeout=30) if proc.poll() is not None else 'no run started'
        with open(pid_file) as f:
            pids = [int(p) for p in f.read().split()]
        assert all(_alive(pid) for pid in pids)
        sessions = (os.getsid(pids[0]), os.getsid(proc.pid))
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=60)
        deadline = time.monotonic() + 5
        while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [pid for pid in pids if _alive(pid)], f'processes of the interrupted run still run: {out}{err}'
        assert proc.returncode == 128 + signum, (proc.returncode, out, err)
        assert 'Traceback' not in out + err, out + err
        assert f'interrupted by {signame}' in err
        assert f'[1/2] tip_digits_16shot shots=2 seed=1: interrupted ({signame})' in out
        assert '[2/2]' not in out and 'sweep finished' not in out  # no further run, no report
        assert sessions[0] == pids[0] != sessions[1]  # the run was a session (and process group) of its own
        with open(osp.join(_run_dir(work_dir, 1), 'sweep.log')) as f:
            assert f'sweep interrupted ({signame}): stopped this run' in f.read()
        assert not _results(work_dir)
    finally:  # on failure: stop what this test started, the sweep first (it would start the next run)
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        for pid in pids:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


# ----------------------------------------------------------------------------------------------------------
# aggregation of synthetic results


def _accuracy(dataset, shots, seed, method='Tip-Adapter'):
    """A made-up, distinct accuracy per cell."""
    return 40. + 2 * (sorted(PAPER_DATASETS + ('digits',)).index(dataset)) + shots + 0.37 * seed + len(method)


def _write(work_dir, datasets, method='Tip-Adapter', shots=(1, 2), seeds=(1, 2, 3), backbone='RN50'):
    for ds in datasets:
        for k in shots:
            for s in seeds:
                atomic_json_dump(dict(method=method, dataset=ds, num_shots=k, seed=s, backbone=backbone,
                                      test_top1=_accuracy(ds, k, s, method), config=f'configs/x_{ds}.py'),
                                 osp.join(work_dir, f'x_{ds}_{method}', f'shot{k}_seed{s}', 'results.json'))


def _report(work_dir):
    write_reports(str(work_dir), io.StringIO())
    with open(osp.join(work_dir, 'report.md')) as f:
        return f.read(), {(r['method'], int(r['shots'])): r for r in _csv_rows(work_dir)}


def test_average_over_the_11_datasets_only_when_all_are_present(tmp_path):
    _write(tmp_path, PAPER_DATASETS + ('digits',))
    md, rows = _report(tmp_path)
    row = rows[('Tip-Adapter', 2)]
    assert 'average mean' in row and not any(c.startswith('avg (') for c in row)
    per_seed = [statistics.fmean(_accuracy(ds, 2, s) for ds in PAPER_DATASETS) for s in (1, 2, 3)]
    assert float(row['average mean']) == pytest.approx(statistics.fmean(per_seed), abs=1e-4)  # digits left out
    assert float(row['average std']) == pytest.approx(statistics.stdev(per_seed), abs=1e-4)
    assert int(row['average n']) == 3
    header = next(line for line in md.splitlines() if line.startswith('| method'))
    assert header.endswith('| ucf101 | digits | average |')
    assert osp.isfile(tmp_path / 'plots' / 'average.png')

    partial = tmp_path / 'partial'
    _write(partial, PAPER_DATASETS[:10])  # ucf101 missing
    md, rows = _report(partial)
    row = rows[('Tip-Adapter', 1)]
    assert 'average mean' not in row and 'avg (10 datasets) mean' in row
    assert float(row['avg (10 datasets) mean']) == pytest.approx(
        statistics.fmean(_accuracy(ds, 1, s) for ds in PAPER_DATASETS[:10] for s in (1, 2, 3)), abs=1e-4)
    assert '| avg (10 datasets) |' in md and '| average |' not in md
    assert not osp.exists(partial / 'plots' / 'average.png')


def test_rows_with_different_coverage_get_their_own_average_column(tmp_path):
    _write(tmp_path, PAPER_DATASETS, method='Tip-Adapter')
    _write(tmp_path, PAPER_DATASETS[:3], method='Tip-Adapter-F', shots=(1,))
    _write(tmp_path, PAPER_DATASETS[:2], method='Zero-shot CLIP', shots=(0,))
    md, rows = _report(tmp_path)
    assert set(rows) == {('Zero-shot CLIP', 0), ('Tip-Adapter', 1), ('Tip-Adapter', 2), ('Tip-Adapter-F', 1)}
    assert rows[('Tip-Adapter', 1)]['average mean'] and not rows[('Tip-Adapter', 1)]['avg (3 datasets) mean']
    assert rows[('Tip-Adapter-F', 1)]['avg (3 datasets) mean'] and not rows[('Tip-Adapter-F', 1)]['average mean']
    assert rows[('Zero-shot CLIP', 0)]['avg (2 datasets) mean']
    assert rows[('Tip-Adapter-F', 1)]['dtd mean'] == ''
    assert list(rows) == [('Zero-shot CLIP', 0), ('Tip-Adapter', 1), ('Tip-Adapter', 2), ('Tip-Adapter-F', 1)]
    assert f'### {LABEL}' in md  # RN50: the published numbers are listed


def test_published_reference_only_for_rn50(tmp_path):
    for backbone in ('RN50', 'ViT-B/16'):
        results = [Result(path=f'/{backbone}/{m}/{k}/{s}', method=m, dataset='eurosat', backbone=backbone, shots=k,
                          seed=s, top1=50. + k + s, config=m, mtime=0.)
                   for m, shots in (('Zero-shot CLIP', (0,)), ('Tip-Adapter', (1, 16))) for k in shots
                   for s in (1, 2)]
        tables = aggregate(label_and_dedupe(results)[0])
        path = str(tmp_path / f'{backbone.replace("/", "")}.png')
        labels = plot_dataset(tables, 'eurosat', path)
        with open(path, 'rb') as f:
            assert f.read(8) == PNG_MAGIC
        refs = [label for label in labels if LABEL in label]
        if backbone == 'RN50':
            assert refs == [f'Zero-shot CLIP: {LABEL}', f'Tip-Adapter: {LABEL}']
        else:
            assert refs == []


def test_same_method_from_two_experiments_is_split(tmp_path):
    for group, acc in (('tip_f_feature_bank', 80.), ('tip_f_image', 70.)):
        for seed in (1, 2):
            atomic_json_dump(dict(method='Tip-Adapter-F', dataset='digits', num_shots=4, seed=seed,
                                  backbone='tiny-clip', test_top1=acc + seed, config='configs/tip_f.py'),
                             str(tmp_path / group / f'shot4_seed{seed}' / 'results.json'))
    _, rows = _report(tmp_path)
    assert float(rows[('Tip-Adapter-F [tip_f_feature_bank]', 4)]['digits mean']) == pytest.approx(81.5)
    assert float(rows[('Tip-Adapter-F [tip_f_image]', 4)]['digits mean']) == pytest.approx(71.5)


def test_published_numbers():
    assert set(PUBLISHED) == {'Zero-shot CLIP', 'Tip-Adapter', 'Tip-Adapter-F'}
    for table in PUBLISHED.values():
        assert set(table) == set(PAPER_DATASETS)
    assert published('Tip-Adapter', 'imagenet') == {1: 60.70, 2: 60.96, 4: 60.98, 8: 61.45, 16: 62.01}
    assert published('Tip-Adapter-F', 'fgvc_aircraft')[16] == 35.55
    assert published('Zero-shot CLIP', 'eurosat') == {0: 37.52}
    assert published('Tip-Adapter', 'imagenet', 'ViT-B/16') is None
    # the 11-dataset means of the note (computed there from the same rows): a check of the transcription
    means = {'Zero-shot CLIP': {0: 58.89},
             'Tip-Adapter': {16: 70.32, 8: 68.50, 4: 66.54, 2: 64.62, 1: 62.33},
             'Tip-Adapter-F': {16: 75.83, 8: 72.45, 4: 69.67, 2: 66.65, 1: 64.60}}
    for method, expected in means.items():
        assert {k: round(v, 2) for k, v in dataset_mean(method).items()} == expected


# ----------------------------------------------------------------------------------------------------------
# outputs a paper can use: runs.csv, report.csv / report.tex, plots as PNG, PDF and SVG with offset error bars


def _flat(record, prefix=''):
    """A results.json record flattened as runs.csv holds it (nested objects as key.subkey, lists as JSON)."""
    flat = {}
    for key, value in record.items():
        name = f'{prefix}{key}'
        if isinstance(value, dict) and value:
            flat.update(_flat(value, name + '.'))
        elif isinstance(value, (dict, list)):
            flat[name] = json.dumps(value)
        else:
            flat[name] = '' if value is None else str(value)
    return flat


def test_runs_csv_has_one_row_per_run_with_every_field(tmp_path):
    _write(tmp_path, ('dtd',), shots=(1, 2), seeds=(1, 2))
    extra = dict(method='Tip-Adapter-F', dataset='dtd', num_shots=4, seed=7, backbone='RN50', test_top1=55.25,
                 timings=dict(train=12.5, test=1.25), skipped_images=dict(train=0, test=2),
                 alphas=[1.0, 2.5], val_top1=None, official=True)
    atomic_json_dump(extra, str(tmp_path / 'tip_f' / 'shot4_seed7' / 'results.json'))
    # the same run found twice (grp/shot1_seed3 and grp_seed3 are one experiment): the older is left out
    older = dict(method='Tip-Adapter', dataset='eurosat', num_shots=1, seed=3, backbone='RN50', test_top1=10.)
    atomic_json_dump(older, str(tmp_path / 'grp_seed3' / 'results.json'))
    os.utime(tmp_path / 'grp_seed3' / 'results.json', (1_000_000, 1_000_000))
    atomic_json_dump({**older, 'test_top1': 20.}, str(tmp_path / 'grp' / 'shot1_seed3' / 'results.json'))
    paths = write_reports(str(tmp_path), io.StringIO())
    assert paths['runs'] == str(tmp_path / 'runs.csv')
    with open(tmp_path / 'runs.csv', newline='') as f:
        rows = list(csv.DictReader(f))
    records = _results(tmp_path)
    assert len(rows) == len(records) == 4 + 1 + 2  # one row per results.json
    by_path = {row['results_json']: row for row in rows}
    assert set(by_path) == {f'{folder}/results.json' for folder in records}
    for folder, record in records.items():
        row = by_path[f'{folder}/results.json']
        flat = _flat(record)
        assert {k: row[k] for k in flat} == flat  # every field, with its value
        assert not [k for k in row if k not in flat and k not in ('results_json', 'report_row', 'in_report')
                    and row[k] != '']  # and nothing else
    row = by_path['tip_f/shot4_seed7/results.json']
    assert row['timings.train'] == '12.5' and row['skipped_images.test'] == '2'
    assert json.loads(row['alphas']) == [1.0, 2.5] and row['val_top1'] == '' and row['official'] == 'True'
    assert 'timings' not in row and row['report_row'] == 'Tip-Adapter-F'
    assert by_path['grp_seed3/results.json']['in_report'] == 'False'
    assert by_path['grp/shot1_seed3/results.json']['in_report'] == 'True'
    assert sum(r['in_report'] == 'True' for r in rows) == 6
    # the report counted the newer of the two
    row = next(r for r in _csv_rows(tmp_path) if r['method'] == 'Tip-Adapter' and r['shots'] == '1')
    assert float(row['eurosat mean']) == pytest.approx(20.) and row['eurosat n'] == '1'


def test_report_csv_and_latex_hold_mean_std_and_n(tmp_path):
    import pandas as pd
    _write(tmp_path, ('oxford_pets', 'dtd'), shots=(1, 4), seeds=(1, 2, 3))
    _write(tmp_path, ('dtd',), method='Meta-Adapter', shots=(4,), seeds=(5,))  # one seed: no std
    paths = write_reports(str(tmp_path), io.StringIO())
    frame = pd.read_csv(paths['csv'])
    assert list(frame.columns[:3]) == ['backbone', 'method', 'shots']
    for col in ('oxford_pets', 'dtd', 'avg (2 datasets)'):
        assert {f'{col} mean', f'{col} std', f'{col} n'} <= set(frame.columns)
    tip = frame[(frame.method == 'Tip-Adapter') & (frame.shots == 4)].iloc[0]
    values = [_accuracy('dtd', 4, s) for s in (1, 2, 3)]
    assert tip['dtd mean'] == pytest.approx(statistics.fmean(values), abs=1e-4)
    assert tip['dtd std'] == pytest.approx(statistics.stdev(values), abs=1e-4) and tip['dtd n'] == 3
    meta = frame[frame.method == 'Meta-Adapter'].iloc[0]
    assert meta['dtd n'] == 1 and pd.isna(meta['dtd std']) and pd.isna(meta['oxford_pets mean'])

    assert paths['tex'] == str(tmp_path / 'report.tex')
    with open(paths['tex']) as f:
        tex = f.read()
    # RN50: the table, then the published numbers of its methods
    assert tex.count(r'\begin{tabular}') == tex.count(r'\end{tabular}') == 2
    assert f'% {LABEL}' in tex and 'Tip-Adapter & 16 & 88.14 & 60.93 \\\\\n' in tex  # over its datasets
    body = tex[tex.index(r'\begin{tabular}'):tex.index(r'\end{tabular}')]
    spec = re.match(r'\\begin\{tabular\}\{(\w+)\}', body).group(1)
    lines = [line for line in body.splitlines()[1:] if line.endswith(r'\\')]
    header, rows = lines[0], lines[1:]
    assert header == r'method & shots & oxford\_pets & dtd & avg (2 datasets) & n \\'
    assert all(line.count('&') == len(spec) - 1 for line in lines)  # as many cells as the column spec says
    assert [tuple(r.split(' & ')[:2]) for r in rows] == [('Tip-Adapter', '1'), ('Tip-Adapter', '4'),
                                                          ('Meta-Adapter', '4')]
    tip4 = rows[1].split(' & ')
    assert tip4[3] == f'${statistics.fmean(values):.2f} \\pm {statistics.stdev(values):.2f}$'
    assert tip4[-1] == r'3 \\'
    meta = rows[2].split(' & ')
    assert meta[2] == '--' and meta[3] == f'${_accuracy("dtd", 4, 5, "Meta-Adapter"):.2f}$' and meta[-1] == r'1 \\'
    for path in (paths['csv'], paths['tex'], paths['md']):
        assert not [f for f in os.listdir(osp.dirname(path)) if f.endswith('.tmp')]


def test_latex_escapes_names_and_lists_the_published_numbers(tmp_path):
    from tip_adapter_mm.sweep.report import render_latex, tex_escape
    assert tex_escape('a_b & 50% #1 {x} $') == r'a\_b \& 50\% \#1 \{x\} \$'
    results = [Result(path=f'/{g}/{s}', method='Tip-Adapter-F', dataset='fgvc_aircraft', backbone='ViT-B/16',
                      shots=16, seed=s, top1=70. + s, config=g, mtime=0.)
               for g in ('tip_f_a', 'tip_f_b') for s in (1, 2)]
    tex = render_latex(aggregate(label_and_dedupe(results)[0]))
    assert r'method & shots & fgvc\_aircraft & n \\' in tex
    assert r'Tip-Adapter-F [tip\_f\_a] & 16 & $71.50 \pm 0.71$ & 2 \\' in tex
    assert tex.count(r'\begin{tabular}') == 1  # ViT-B/16: nothing published
    for r in results:
        r.backbone = 'RN50'
    tex = render_latex(aggregate(label_and_dedupe(results[:2])[0]))
    assert tex.count(r'\begin{tabular}') == 2  # RN50: the published numbers follow
    assert 'Tip-Adapter-F & 16 & 35.55 \\\\\n' in tex


def test_plots_in_three_formats_at_print_resolution(tmp_path):
    from PIL import Image
    _write(tmp_path, ('eurosat',), shots=(1, 2), seeds=(1, 2))
    _write(tmp_path, ('eurosat',), method='Tip-Adapter-F', shots=(1, 2), seeds=(1, 2))
    paths = write_reports(str(tmp_path), io.StringIO())
    plots = tmp_path / 'plots'
    assert paths['eurosat'] == str(plots / 'eurosat.png')
    assert paths['eurosat (pdf)'] == str(plots / 'eurosat.pdf')
    assert paths['eurosat (svg)'] == str(plots / 'eurosat.svg')
    with open(plots / 'eurosat.png', 'rb') as f:
        assert f.read(8) == PNG_MAGIC
    with Image.open(plots / 'eurosat.png') as image:
        dpi = image.info.get('dpi')
        assert dpi and min(dpi) >= 200, dpi
        assert image.size[0] >= 1200
    with open(plots / 'eurosat.pdf', 'rb') as f:
        assert f.read(5) == b'%PDF-'
    with open(plots / 'eurosat.svg') as f:
        svg = f.read()
    assert '<svg' in svg and svg.rstrip().endswith('</svg>')
    assert not [f for f in os.listdir(plots) if f.endswith('.tmp') or f.startswith('.')]
    with open(tmp_path / 'report.md') as f:
        md = f.read()
    assert '![eurosat](plots/eurosat.png) ([PDF](plots/eurosat.pdf), [SVG](plots/eurosat.svg))' in md


def test_the_report_without_matplotlib_has_its_tables_and_says_how_to_get_plots(tmp_path, monkeypatch):
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, 'find_spec', lambda name, *a: None if name == 'matplotlib' else real(name, *a))
    _write(tmp_path, ('eurosat',), shots=(1, 2), seeds=(1, 2))
    out = io.StringIO()
    paths = write_reports(str(tmp_path), out)
    assert set(paths) == {'md', 'csv', 'tex', 'runs'} and not (tmp_path / 'plots').exists()
    assert "pip install 'tip_adapter_mm[plots]'" in out.getvalue()
    assert "pip install 'tip_adapter_mm[plots]'" in (tmp_path / 'report.md').read_text()


def test_error_bars_of_methods_are_offset(tmp_path):
    from tip_adapter_mm.sweep.plots import dataset_figure, errorbar_offsets, shifted
    for n in range(1, 9):
        offsets = errorbar_offsets(n)
        assert len(set(offsets)) == n and sum(offsets) == pytest.approx(0.)
        assert max(offsets) - min(offsets) <= 0.4 + 1e-9  # within 0.4 octaves: 1 and 2 shots never meet
    assert shifted([1, 4], 1.) == [2., 8.]
    results = [Result(path=f'/{m}/{k}/{s}', method=m, dataset='eurosat', backbone='RN50', shots=k, seed=s,
                      top1=50. + k + s, config=m, mtime=0.)
               for m, shots in (('Zero-shot CLIP', (0,)), ('Tip-Adapter', (1, 16)), ('Tip-Adapter-F', (1, 16)),
                                ('Meta-Adapter', (1, 16))) for k in shots for s in (1, 2)]
    fig, labels = dataset_figure(aggregate(label_and_dedupe(results)[0]), 'eurosat')
    ax = fig.axes[0]
    bars = {c.get_label(): c for c in ax.containers}
    assert set(bars) == {'Tip-Adapter', 'Tip-Adapter-F', 'Meta-Adapter'}
    xs = {label: list(c.lines[0].get_xdata()) for label, c in bars.items()}
    assert len({tuple(x) for x in xs.values()}) == 3  # each method at its own x
    for x in xs.values():
        assert x[0] == pytest.approx(1, rel=0.2) and x[1] == pytest.approx(16, rel=0.2)  # near its shots
        assert x[1] / x[0] == pytest.approx(16)  # the same shift at every shots
    # the bars too (their segments' x), not only the markers
    for label, c in bars.items():
        segments = c.lines[2][0].get_segments()
        assert [s[0][0] for s in segments] == pytest.approx(xs[label])
    # the published series stay at the exact shots
    published_lines = [line for line in ax.get_lines() if line.get_label() == f'Tip-Adapter: {LABEL}']
    assert list(published_lines[0].get_xdata()) == [1, 2, 4, 8, 16]


# ----------------------------------------------------------------------------------------------------------
# the backbone axis

def test_backbones_axis_plans_one_override_per_backbone(tmp_path):
    dtd = osp.join(ROOT, 'configs', 'tip_dtd_16shot.py')
    out = io.StringIO()
    summary = sweep(['--configs', dtd, '--shots', '4', '--seeds', '1', '--work-dir', str(tmp_path / 'sweep'),
                     '--backbones', 'RN50', 'ViT-B-16:laion2b_s34b_b88k', 'ViT-L/14@336px', '--dry-run'], out)
    assert summary.exit_code == 0 and not summary.ran and not osp.exists(tmp_path / 'sweep')
    lines = [line for line in out.getvalue().splitlines() if 'would run' in line]
    assert len(lines) == 3
    assert 'model.backbone.model_name=RN50 num_shots=4' in lines[0]  # the config's weights tag stays
    assert 'model.backbone.model_name=ViT-B-16 model.backbone.pretrained=laion2b_s34b_b88k' in lines[1]
    assert 'model.backbone.model_name=ViT-L/14@336px num_shots=4' in lines[2]
    for line, folder in zip(lines, ('RN50', 'ViT-B-16_laion2b_s34b_b88k', 'ViT-L-14-336px')):
        assert osp.join(str(tmp_path / 'sweep'), folder, 'tip_dtd_16shot', 'shot4_seed1') in line
    # each run's config, as the project's runner resolves it: the backbone's size, mean/std and feat_dim
    from mmengine.config import Config

    from tip_adapter_mm.engine.runner import resolve_config
    from tip_adapter_mm.launch import merge_train_args, parse_train_args
    from tip_adapter_mm.sweep import plan_runs
    runs = plan_runs([dtd], [4], [1], str(tmp_path), [('ViT-L/14@336px', None), ('RN50x4', 'openai')])
    for run, (size, dim) in zip(runs, ((336, 768), (288, 640))):
        args = parse_train_args(run.train_args())
        cfg = resolve_config(merge_train_args(Config.fromfile(args.config), args))
        assert cfg.model.head.feat_dim == dim and cfg.test_dataloader.dataset.pipeline[2].crop_size == size


@pytest.mark.parametrize('argv', [['--backbones', 'RN50', '--cfg-options', 'model.backbone.model_name=RN101'],
                                  ['--backbones', 'RN50', '--cfg-options', 'model.backbone.pretrained=x.pt'],
                                  ['--backbones', 'RN50:'], ['--backbones', ':openai']])
def test_backbones_axis_bad_input(tmp_path, argv):
    with pytest.raises(SystemExit):
        main(['--configs', CONFIGS[0], '--work-dir', str(tmp_path), *argv])


def test_report_groups_by_backbone_and_tag(tmp_path):
    """One table per backbone; a tag other than OpenAI's is part of the backbone (ViT-B-16 twice)."""
    backbones = (('RN50', 'openai'), ('ViT-B-16', 'openai'), ('ViT-B-16', 'laion2b_s34b_b88k'))
    for i, (name, tag) in enumerate(backbones):
        for seed in (1, 2):
            path = tmp_path / f'{name}_{tag}' / 'tip_digits_16shot' / f'shot2_seed{seed}' / 'results.json'
            atomic_json_dump(dict(RECORD, backbone=name, pretrained=tag, seed=seed, test_top1=10. * i + seed),
                             str(path))
    write_reports(str(tmp_path), io.StringIO())
    rows = {row['backbone']: row for row in _csv_rows(tmp_path)}
    assert set(rows) == {'RN50', 'ViT-B-16', 'ViT-B-16 (laion2b_s34b_b88k)'}
    assert float(rows['ViT-B-16 (laion2b_s34b_b88k)']['digits mean']) == pytest.approx(21.5)
    assert float(rows['ViT-B-16']['digits mean']) == pytest.approx(11.5)
    with open(tmp_path / 'report.md') as f:
        assert '## Backbone: ViT-B-16 (laion2b_s34b_b88k)' in f.read()
    with open(tmp_path / 'runs.csv', newline='') as f:
        runs = list(csv.DictReader(f))
    assert sorted({(r['backbone'], r['pretrained']) for r in runs}) == [
        ('RN50', 'openai'), ('ViT-B-16', 'laion2b_s34b_b88k'), ('ViT-B-16', 'openai')]


def test_feature_store_key_holds_the_backbone():
    """Each image is encoded once per backbone: the store's key differs by model and by weights tag."""
    from tip_adapter_mm.features.keys import backbone_identity
    ids = [backbone_identity(dict(model_name=n, pretrained=t)) for n, t in
           (('ViT-B-16', 'openai'), ('ViT-B-16', 'laion2b_s34b_b88k'), ('RN50', 'openai'))]
    assert len({json.dumps(i, sort_keys=True) for i in ids}) == 3


@pytest.mark.slow
def test_backbones_axis_end_to_end(demo_assets, tmp_path):
    """A real run through the axis: the override reaches tip-adapter-train and the report's backbone column."""
    digits, ckpt = demo_assets
    options = [o for o in demo_options(demo_assets) if not o.startswith('model.backbone.pretrained=')]
    out = io.StringIO()
    summary = sweep(['--configs', CONFIGS[0], '--shots', '2', '--seeds', '1', '--work-dir', str(tmp_path),
                     '--backbones', f'tiny-clip:{ckpt}', '--cfg-options', *options], out)
    assert summary.exit_code == 0, out.getvalue()
    record = _results(tmp_path)[osp.join(osp.splitext(osp.basename(ckpt))[0].join(('tiny-clip_', '')),
                                         'tip_digits_16shot', 'shot2_seed1')]
    assert (record['backbone'], record['pretrained']) == ('tiny-clip', ckpt)
    assert [row['backbone'] for row in _csv_rows(tmp_path)] == ['tiny-clip']
