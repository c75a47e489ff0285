#!/usr/bin/env python
"""Benchmark of the feature store on a whole sweep: image forward passes and wall time, with and without it.

The embedded demo (digits + the project's tiny CLIP, made once under ``data/`` by
``tip_adapter_mm.demo.ensure_demo_assets``) is swept over 4 methods x shots x seeds, three times in one
invocation:

(a) without the feature store (``feature_store.enabled=False``, what ``--no-feature-store`` sets): every run
    encodes its cache views, its validation split and its test split;
(b) with a fresh, empty store: each (image, view) is encoded by the first run that needs it;
(c) the same sweep again on the store of (b): nothing is left to encode.

The runs are planned by the project's sweep (:func:`tip_adapter_mm.sweep.runs.plan_runs`): every config x shots x
seeds, except zero-shot CLIP, which uses no shots (``num_shots = 0``) and runs once per seed. Each run is
``tools/train.py``'s ``main_train`` in this process (default; the library imports are paid once, before the
timing starts) or, with ``--subprocess``, a child process ``python -m tip_adapter_mm.cli.train`` started by the
project's :func:`tip_adapter_mm.sweep.runs.execute` (each run pays ~8 s of imports on top of its work).

Every run records the image views it passed through the encoder in ``results.json`` (``image_forwards``: cache,
val, test). The benchmark sums them per sweep and compares (b) with the analytic minimum: every validation and
test image once, plus every distinct (train image, few-shot seed, view) of the runs' few-shot samples
(``fewshot_split.json``) once; views are seeded by (few-shot seed, view, image), so a 4-shot and a 16-shot
sample of the same seed share the views of their common images. It prints a table (image forwards, wall time,
ratios to (a), all measured in this one run) and the checks; the exit status is 1 when (b) is not the minimum,
(c) encodes anything, (a) writes a store, or a run fails. Wall times are reported, never asserted.

Tip-Adapter-F runs ``--tip-f-epochs`` epochs (default 5 instead of the config's 20) to keep the time down; it
trains from the stored cache views (``train_from='feature_bank'``), so the epoch count does not change any
image forward count.

Usage::

    python benchmarks/bench_sweep.py [--quick] [--shots 4 16] [--seeds 1 2] [--tip-f-epochs 5] [--subprocess]
        [--work-dir DIR] [--data-dir data]

Default (14 runs per sweep, 42 in all): about 5 minutes on 2 shared CPU cores in-process; ``--quick`` (seed 1
only, 7 runs per sweep) about 3 minutes; ``--subprocess`` adds ~8 s of imports per run (``--quick --shots 4
--subprocess``, 12 runs: about 2.5 minutes).
"""
import argparse
import contextlib
import json
import os
import os.path as osp
import shutil
import sys
import tempfile
import time
from collections import Counter

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, REPO)

from tip_adapter_mm.sweep.results import read_results  # noqa: E402
from tip_adapter_mm.sweep.runs import RUN_LOG, execute, plan_runs  # noqa: E402

#: (method, config, extra --cfg-options); '{epochs}' is replaced by --tip-f-epochs
METHODS = [('Zero-shot CLIP', 'configs/zeroshot_digits.py', []),
           ('Tip-Adapter', 'configs/tip_digits_16shot.py', []),
           ('Tip-Adapter-F', 'configs/tip_f_digits_16shot.py', ['max_epochs={epochs}']),
           ('Meta-Adapter', 'configs/meta_adapter_digits_16shot.py', [])]
#: (label, description, store): store None = off, 'fresh' = a new store, 'again' = the store of the sweep before
SWEEPS = [('a', 'no feature store', None), ('b', 'fresh store', 'fresh'), ('c', 'same store again', 'again')]
SPLITS = ('cache', 'val', 'test')
#: the timings (results.json) of the phases that encode images or read their features
ENCODING_PHASES = ('cache', 'val_features', 'test_features')
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm', '.tif', '.tiff', '.webp')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--shots', type=int, nargs='+', default=[4, 16], help='shots per class (default 4 16)')
    parser.add_argument('--seeds', type=int, nargs='+', default=[1, 2], help='few-shot seeds (default 1 2)')
    parser.add_argument('--quick', action='store_true', help='seed 1 only (7 runs per sweep instead of 14)')
    parser.add_argument('--tip-f-epochs', type=int, default=5,
                        help="Tip-Adapter-F's training epochs (default 5; the config has 20)")
    parser.add_argument('--subprocess', action='store_true',
                        help='run each run in a child process (python -m tip_adapter_mm.cli.train) instead of '
                             'in this process')
    parser.add_argument('--work-dir', default=None,
                        help='where the runs and the store go (default: a temporary folder, removed at the end '
                             'unless a check fails)')
    parser.add_argument('--data-dir', default=osp.join(REPO, 'data'),
                        help='where the demo digits and tiny CLIP are (made there if missing)')
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds = args.seeds[:1]
    if args.tip_f_epochs < 1:
        parser.error('--tip-f-epochs must be >= 1')
    if any(k < 1 for k in args.shots):
        parser.error('--shots must be >= 1 (zero-shot CLIP runs without shots)')
    return args


@contextlib.contextmanager
def output_to(path):
    """Send everything written to file descriptors 1 and 2 (Python, mmengine, C code) to ``path``."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(path, 'a') as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def run_in_process(run, options) -> int:
    """One run through ``tools/train.py``'s ``main_train``, its output in ``<run dir>/sweep.log``; exit code."""
    from tip_adapter_mm.launch import main_train
    os.makedirs(run.work_dir, exist_ok=True)
    with output_to(osp.join(run.work_dir, RUN_LOG)):
        try:
            main_train(run.train_args(options))
        except (Exception, SystemExit) as e:  # noqa: BLE001  (reported with the run, the sweep goes on)
            print(f'run failed: {type(e).__name__}: {e}', file=sys.stderr)
            return getattr(e, 'code', 1) or 1
    return 0 if read_results(run.results_path)[0] is not None else -1


def run_sweep(label, runs, options_of, subprocess_mode):
    """Run every run; return (wall seconds of the whole sweep, [(run, results dict or None, exit code)])."""
    done = []
    start = time.perf_counter()
    for i, run in enumerate(runs, 1):
        t0 = time.perf_counter()
        options = options_of(run)
        code = execute(run, options) if subprocess_mode else run_in_process(run, options)
        data = read_results(run.results_path)[0] if code == 0 else None
        seconds = time.perf_counter() - t0
        if data is None:
            print(f'  ({label}) [{i}/{len(runs)}] {run.name}: FAILED (exit code {code}) after {seconds:.1f} s; '
                  f'log: {osp.join(run.work_dir, RUN_LOG)}', flush=True)
        else:
            forwards = data.get('image_forwards') or {}
            print(f'  ({label}) [{i}/{len(runs)}] {run.name}: {seconds:.1f} s, image forwards '
                  + ' '.join(f'{s}={forwards.get(s, 0)}' for s in SPLITS), flush=True)
        done.append((run, data, code))
    return time.perf_counter() - start, done


def count_images(folder):
    return sum(1 for _, _, files in os.walk(folder) for f in files if f.lower().endswith(IMAGE_EXTENSIONS))


def analytic_minimum(done, digits):
    """The fewest image views a sweep can encode: each val/test image once, each distinct (train image,
    few-shot seed, view) once. Returns (dict per split, details)."""
    views = {}  # (image, seed) -> views needed
    for run, data, _ in done:
        if not data or not data.get('cache_size'):
            continue  # zero-shot: no cache, no fewshot_split.json
        with open(osp.join(run.work_dir, 'fewshot_split.json')) as f:
            split = json.load(f)
        for path, _ in split['train']:
            key = (path, split['seed'])
            views[key] = max(views.get(key, 0), int(data['augment_epochs']))
    val, test = count_images(osp.join(digits, 'val')), count_images(osp.join(digits, 'test'))
    sampled = sum(int(data['cache_size']) for _, data, _ in done if data and data.get('cache_size'))
    return dict(cache=sum(views.values()), val=val, test=test), dict(distinct=len(views), sampled=sampled)


def phase_seconds(done, phases):
    """The runs' recorded ``timings`` of ``phases``, summed."""
    return sum(float(((data or {}).get('timings') or {}).get(p, 0.)) for _, data, _ in done for p in phases)


def totals(done):
    out = Counter({s: 0 for s in SPLITS})
    for _, data, _ in done:
        for s in SPLITS:
            out[s] += int(((data or {}).get('image_forwards') or {}).get(s, 0))
    return out


def main(argv=None):
    args = parse_args(argv)
    from tip_adapter_mm.demo import ensure_demo_assets
    digits, ckpt = (osp.abspath(p) for p in ensure_demo_assets(args.data_dir))
    if not args.subprocess:  # pay the library imports before any timing
        import open_clip  # noqa: F401
        import tip_adapter_mm.launch  # noqa: F401
        from tip_adapter_mm.demo import register_tiny_clip
        register_tiny_clip()
    work = osp.abspath(args.work_dir) if args.work_dir else tempfile.mkdtemp(prefix='bench-sweep-')
    store_root = osp.join(work, 'store')
    unused_root = osp.join(work, 'store-of-a')  # (a) points its (disabled) store here: it must stay absent
    configs = [osp.join(REPO, config) for _, config, _ in METHODS]
    extra_of = {osp.join(REPO, config): [o.format(epochs=args.tip_f_epochs) for o in extra]
                for _, config, extra in METHODS}

    print(f'Feature-store sweep benchmark: digits demo, tiny CLIP ({ckpt}), '
          f'{len(METHODS)} methods x shots {args.shots} x seeds {args.seeds}; '
          f'{"child processes" if args.subprocess else "in-process runs"}, work dir {work}')
    print(f'  zero-shot CLIP uses no shots (num_shots = 0): it runs once per seed, not once per shot count; '
          f'Tip-Adapter-F runs {args.tip_f_epochs} epochs (max_epochs={args.tip_f_epochs}; the config has 20) '
          'from the stored cache views')
    results = {}
    try:
        for label, desc, store in SWEEPS:
            runs = plan_runs(configs, args.shots, args.seeds, osp.join(work, f'sweep_{label}'))
            common = [f'model.backbone.pretrained={ckpt}',
                      *(f'{k}.dataset.data_root={digits}' for k in ('train_dataloader', 'val_dataloader',
                                                                     'test_dataloader')),
                      f'feature_store.root={store_root if store else unused_root}']
            if store is None:
                common.append('feature_store.enabled=False')

            def options_of(run, common=common, label=label):
                return [*common, f'experiment_name=bench-{label}-{time.time_ns()}', *extra_of[run.config]]

            print(f'({label}) {desc}: {len(runs)} runs', flush=True)
            results[label] = run_sweep(label, runs, options_of, args.subprocess)
        report(results, digits, store_root, unused_root, args)
    finally:
        if not args.work_dir and results.get('exit_code') == 0:
            shutil.rmtree(work, ignore_errors=True)
        elif not args.work_dir:
            print(f'work dir kept for inspection: {work}')
    return results['exit_code']


def report(results, digits, store_root, unused_root, args):
    from tip_adapter_mm.features import FeatureStore
    failed = [(label, run.name, code) for label, _, _ in SWEEPS for run, data, code in results[label][1]
              if data is None]
    minimum, detail = analytic_minimum(results['b'][1], digits)
    sums = {label: totals(results[label][1]) for label, _, _ in SWEEPS}
    walls = {label: results[label][0] for label, _, _ in SWEEPS}
    base_total, base_wall = sum(sums['a'].values()), walls['a']

    print()
    header = (f'{"sweep":<28}{"runs":>5}{"cache":>9}{"val":>8}{"test":>8}{"forwards":>10}{"vs (a)":>9}'
              f'{"wall s":>9}{"vs (a)":>9}{"in runs s":>11}{"encoding s":>12}')
    print(header)
    print('-' * len(header))
    for label, desc, _ in SWEEPS:
        s, total = sums[label], sum(sums[label].values())
        print(f'{f"({label}) {desc}":<28}{len(results[label][1]):>5}{s["cache"]:>9}{s["val"]:>8}{s["test"]:>8}'
              f'{total:>10}{total / base_total if base_total else float("nan"):>9.3f}{walls[label]:>9.1f}'
              f'{walls[label] / base_wall:>9.3f}{phase_seconds(results[label][1], ("total", )):>11.1f}'
              f'{phase_seconds(results[label][1], ENCODING_PHASES):>12.1f}')
    m_total = sum(minimum.values())
    print(f'{"analytic minimum":<28}{"":>5}{minimum["cache"]:>9}{minimum["val"]:>8}{minimum["test"]:>8}'
          f'{m_total:>10}{m_total / base_total if base_total else float("nan"):>9.3f}')
    print('in runs s: the runs\' own timings.total summed (the rest of the wall time: building each runner'
          + (', and the imports of each child process' if args.subprocess else '') + '); '
          'encoding s: their ' + ' + '.join(ENCODING_PHASES) + ' timings (encoding or reading the features)')
    print(f'analytic minimum: {minimum["val"]} val + {minimum["test"]} test images (files under {digits}) once, '
          f'and {detail["distinct"]} distinct (train image, few-shot seed) pairs x 10 views (of '
          f'{detail["sampled"]} cache images sampled over the runs)')

    # per-run consistency: (a) encodes everything, every sweep gives the same accuracies
    everything = sum(int(d.get('cache_size') or 0) * int(d.get('augment_epochs') or 0) + minimum['val']
                     + minimum['test'] for _, d, _ in results['a'][1] if d)
    acc = {}
    for label, _, _ in SWEEPS:
        for run, data, _ in results[label][1]:
            if data:
                acc.setdefault(run.name, []).append(data['test_top1'])
    same_acc = sum(1 for v in acc.values() if len(v) == len(SWEEPS) and len(set(v)) == 1)
    store = FeatureStore(store_root) if osp.isdir(store_root) else None
    namespaces = store.namespaces() if store else []

    checks = [
        ('every run finished with a results.json', not failed),
        (f'(a) encodes every view of every run ({everything})', sum(sums['a'].values()) == everything),
        ('(a) wrote no store', not osp.exists(unused_root)),
        (f'(b) image forwards == analytic minimum ({sum(sums["b"].values())} vs {m_total})',
         sums['b'] == Counter(minimum)),
        (f'(c) image forwards == 0 ({sum(sums["c"].values())})', sum(sums['c'].values()) == 0),
    ]
    print()
    for name, ok in checks:
        print(f'  [{"ok" if ok else "FAIL"}] {name}')
    for label, name, code in failed:
        print(f'    ({label}) {name}: exit code {code}')
    if failed:
        label, name, _ = failed[0]
        run = next(run for run, _, _ in results[label][1] if run.name == name)
        with open(osp.join(run.work_dir, RUN_LOG), errors='replace') as f:
            tail = f.readlines()[-8:]
        print(f'    last lines of the first failed run\'s log ({label}) {name}:\n'
              + ''.join(f'    | {line}' for line in tail), end='')
    print(f'  [info] same test top-1 in the three sweeps: {same_acc} of {len(acc)} runs')
    if store:
        entries = sum(n['entries'] for n in namespaces)
        print(f'  [info] store after (b) and (c): {len(namespaces)} namespace(s), {entries} entries, '
              f'{store.size_bytes() / 2 ** 20:.2f} MiB')
    print('  wall times include each run\'s runner construction, text encoder, searches and training '
          f'({"and ~8 s of imports per child process" if args.subprocess else "imports paid once before the timing"})')
    results['exit_code'] = 0 if all(ok for _, ok in checks) else 1


if __name__ == '__main__':
    sys.exit(main())
