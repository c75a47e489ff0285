"""The embedded demo: zero-shot CLIP, Tip-Adapter, Tip-Adapter-F and Meta-Adapter on real images, offline, on a CPU.

Writes scikit-learn's handwritten digits as an image-folder dataset, pretrains the project's tiny CLIP on a
disjoint part of them (once; both are cached under ``data/``), then runs each method's config through the
same runner code as ``tools/train.py`` and prints the results side by side.

    python tools/demo.py [--seeds 1 2 3] [--work-dir work_dirs/demo] [--data-dir data]
    python tools/demo.py --meta-schedules --seeds 1 2 3   # how the demo's Meta-Adapter schedule was chosen
"""
import argparse
import json
import os.path as osp
import statistics
import sys
import time

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..'))

ROOT = osp.join(osp.dirname(osp.abspath(__file__)), '..')
#: (row name, config, extra --cfg-options)
METHODS = [('Zero-shot CLIP', 'configs/zeroshot_digits.py', []),
           ('Tip-Adapter', 'configs/tip_digits_16shot.py', []),
           ('Tip-Adapter-F', 'configs/tip_f_digits_16shot.py', ['train_from=feature_bank']),
           ('Tip-F (image)', 'configs/tip_f_digits_16shot.py', ['train_from=image']),
           ('Meta-Adapter', 'configs/meta_adapter_digits_16shot.py', []),
           # the same adapter and initialisation, not trained: one epoch at learning rate 0 (its parameters stay
           # exactly at their initial values: results.json's trained_param_change is 0)
           ('Meta untrained', 'configs/meta_adapter_digits_16shot.py', ['optim_wrapper.optimizer.lr=0.0',
                                                                        'max_epochs=1'])]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Run the embedded demo')
    parser.add_argument('--seeds', type=int, nargs='+', default=[1], help='few-shot sampling seeds')
    parser.add_argument('--shots', type=int, default=16, help='images per class in the cache')
    parser.add_argument('--work-dir', default='work_dirs/demo', help='where the runs write')
    parser.add_argument('--data-dir', default='data', help='where the digits and the tiny CLIP are cached')
    parser.add_argument('--verbose', action='store_true',
                        help="print each run's full log (by default it goes to <run work dir>/console.log and "
                             'the demo prints one line per run and the table)')
    parser.add_argument('--meta-schedules', action='store_true',
                        help="run the grid the demo's Meta-Adapter schedule was chosen from and print the validation "
                             'top-1 of each schedule (the choice uses validation only; test is printed beside it)')
    return parser.parse_args(argv)


#: the demo's Meta-Adapter schedules: lr x softmax classes x queries (24 held out per base digit, or the supports),
#: 20 epochs each, the best validation epoch kept
META_SCHEDULES = [(lr, loss, queries) for lr in (1e-3, 3e-3, 1e-2) for loss in ('all', 'base')
                  for queries in (24, None)]


def meta_schedules(args):
    """Run :data:`META_SCHEDULES` over the seeds; print validation (the criterion) and test top-1."""
    rows = []
    for lr, loss, queries in META_SCHEDULES:
        extra = [f'optim_wrapper.optimizer.lr={lr}', f'model.head.loss_classes={loss}', f'query_shots={queries}',
                 'max_epochs=20']
        name = f'lr{lr:g}_{loss}_q{queries}'
        results = [run_config('configs/meta_adapter_digits_16shot.py', osp.join(args.work_dir, 'meta_schedules',
                                                                              f'{name}_seed{seed}'),
                              args.data_dir, args.shots, seed, extra, args.verbose) for seed in args.seeds]
        rows.append((name, results))
    best = max(rows, key=lambda row: statistics.mean(r['val_top1'] for r in row[1]))[0]
    print(f"\n{'schedule (20 epochs)':<22} {'val top-1':>14} {'test top-1':>14} {'novel top-1':>14}")
    for name, results in rows:
        print(f"{name:<22} {_mean_std([r['val_top1'] for r in results]):>14} "
              f"{_mean_std([r['test_top1'] for r in results]):>14} "
              f"{_mean_std([r.get('test_novel_top1') for r in results]):>14}{'  <- best validation' if name == best else ''}")
    return rows


def run_config(config, work_dir, data_dir, shots, seed, extra=(), verbose=False, stage=''):
    """Train (build, select, save, test) one config on the demo data; return its results.json.

    Unless ``verbose``, the run's console output (mmengine's log, with its config dump) goes to
    ``<work_dir>/console.log`` (mmengine also writes its log under the work dir) and one line says what ran.
    """
    import contextlib
    import os
    from mmengine.config import Config

    from tip_adapter_mm.launch import main_train
    from tip_adapter_mm.settings import is_zero_shot
    digits = osp.join(data_dir, 'digits')
    # zero-shot CLIP has no cache (its config sets num_shots=0): the shot count is not passed to it
    zero_shot = is_zero_shot(Config.fromfile(osp.join(ROOT, config)))
    options = ([] if zero_shot else [f'num_shots={shots}']) + [f'fewshot_seed={seed}',
               f'model.backbone.pretrained={osp.join(data_dir, "tiny_clip", "tiny_clip.pt")}',
               f'experiment_name={osp.basename(work_dir)}-{time.time_ns()}', *extra]
    options += [f'{k}.dataset.data_root={digits}' for k in ('train_dataloader', 'val_dataloader',
                                                            'test_dataloader')]
    args = [osp.join(ROOT, config), '--work-dir', work_dir, '--cfg-options', *options]
    start = time.perf_counter()
    if verbose:
        main_train(args)
    else:
        os.makedirs(work_dir, exist_ok=True)
        log = osp.join(work_dir, 'console.log')
        print(f'{stage}{osp.basename(work_dir)} ...', end=' ', flush=True)
        with open(log, 'w') as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
            try:
                main_train(args)
            except BaseException:
                print(f'failed: see {log}', file=sys.__stdout__, flush=True)
                raise
    with open(osp.join(work_dir, 'results.json')) as f:
        results = json.load(f)
    if not verbose:
        print(f"test top-1 {results['test_top1']:.2f}  ({time.perf_counter() - start:.1f} s)", flush=True)
    return results


def main(argv=None):
    args = parse_args(argv)
    from tip_adapter_mm.demo import ensure_demo_assets
    start = time.perf_counter()
    print(f'preparing the demo data and the tiny CLIP under {args.data_dir}/ (once)', flush=True)
    ensure_demo_assets(args.data_dir)
    prep = time.perf_counter() - start
    if args.meta_schedules:
        return meta_schedules(args)
    rows = []
    total = len(METHODS) * len(args.seeds)
    for m, (method, config, extra) in enumerate(METHODS):
        name = method.lower().replace(' ', '_').replace('(', '').replace(')', '')
        results = [run_config(config, osp.join(args.work_dir, f'{name}_seed{seed}'), args.data_dir, args.shots,
                              seed, extra, args.verbose, f'[{m * len(args.seeds) + k + 1}/{total}] {method}: ')
                   for k, seed in enumerate(args.seeds)]
        rows.append((method, results))
    print_table(rows, args, prep, time.perf_counter() - start)
    return rows


def _mean_std(values):
    values = [v for v in values if v is not None]
    if not values:
        return '-'
    if len(values) == 1:
        return f'{values[0]:.2f}'
    return f'{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}'


def print_table(rows, args, prep_s, total_s):
    print(f'\nEmbedded demo: digits (10 classes), tiny CLIP, {args.shots} shots, seeds {args.seeds}')
    header = (f"{'method':<16} {'val top-1':>14} {'test top-1':>14} {'novel top-1':>14} {'alpha':>13} "
              f"{'beta':>13} {'max |dw|':>9} {'train s':>8} {'wall s':>7}")
    print(header)
    print('-' * len(header))
    for method, results in rows:
        searched = results[0].get('search_scale') is not None
        alpha = _mean_std([r['alpha'] for r in results]) if searched else '-'
        beta = _mean_std([r['beta'] for r in results]) if searched else '-'
        wall = statistics.mean(r['timings'].get('total', 0.) for r in results)
        train = statistics.mean(r['timings'].get('train', 0.) for r in results)
        changes = [r.get('trained_param_change') for r in results]
        change = f'{max(changes):.2g}' if all(c is not None for c in changes) else '-'
        print(f"{method:<16} {_mean_std([r['val_top1'] for r in results]):>14} "
              f"{_mean_std([r['test_top1'] for r in results]):>14} "
              f"{_mean_std([r.get('test_novel_top1') for r in results]):>14} {alpha:>13} {beta:>13} {change:>9} "
              f"{train:>8.2f} {wall:>7.1f}")
    print('novel top-1: test images of the digits 7, 8, 9, classified among all 10 classes; Meta-Adapter is '
          'meta-trained on the other 7 digits only (the demo\'s schedule: configs/meta_adapter_digits_16shot.py); '
          '"Meta untrained" is the same adapter at its initial weights. max |dw|: the largest change of a trained '
          'parameter, over seeds')
    print(f'(times are per run, mean over seeds; data + tiny CLIP preparation {prep_s:.1f} s, total '
          f'{total_s:.1f} s; results.json and the full logs (console.log) per run under {args.work_dir})')


if __name__ == '__main__':
    main()
