#!/usr/bin/env python
"""Benchmark of Tip-Adapter-F's two training data paths on the embedded demo.

For every few-shot seed, ``configs/tip_f_digits_16shot.py`` is trained twice in this process:

- ``train_from=feature_bank`` (the project's default): each step draws one of the augmented views stored
  while building the cache; CLIP is not run during training;
- ``train_from=image`` (the official way): augmented images are loaded and re-encoded by CLIP every step.

Per run it prints the training wall time (``results.json`` ``timings['train']``, the epochs loop) and the
total, test and validation top-1, the selected epoch, and the number of CLIP image forward passes
(``encode_image`` calls and images encoded) made **during training**, i.e. between the first
``before_train_epoch`` and the last ``after_train_epoch``. The count comes from :class:`ClipForwardCounterHook`
(defined here, registered in mmpretrain's ``HOOKS``), which wraps the backbone's ``clip.encode_image`` for
the whole run and tags every call with the phase it falls in, so the cache / validation / test encodings
made before and after the epochs loop are shown apart and not counted. Inside the window, calls made by a
train step (``before_train_iter`` .. ``after_train_iter``) are the training forwards proper; any other call in
the window (e.g. a hook encoding the validation split lazily at the end of an epoch) is shown separately.
The hook also splits the training window into data loading, train steps (of which CLIP ``encode_image``),
checkpoint saving and the rest (other end-of-epoch hooks: epoch selection, logging).

A side-by-side summary follows: the mean test top-1 of each path over the seeds and their difference
(target: feature_bank within 1 point of image), the ratio of training wall times image / feature_bank
(target >= 10x) and the CLIP forwards in training (target: 0 for feature_bank).

Usage::

    python benchmarks/bench_finetune.py [--seeds 1 2 3] [--paths feature_bank image] [--epochs N]
        [--work-dir DIR] [--threads T] [--no-warmup] [--cfg-options K=V ...] [--json FILE] [--verbose]

Runs from any directory (it works in the repository root, where the configs' ``data/`` paths point, and
creates the demo assets there if needed). Work dirs go under a temporary directory that is removed at the
end, or under ``--work-dir`` (kept). Before the timed runs, one untimed 1-epoch run of each path warms up
imports and lazily initialised code so the first timed run is not penalised (``--no-warmup`` skips it).
Torch uses ``--threads`` threads (default 1: on a shared 2-core machine a second OpenMP thread stalls
whenever another process holds the other core, which makes timings erratic).
"""
import argparse
import json
import os
import pathlib
import shutil
import statistics
import sys
import tempfile
import time
import warnings

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from mmengine.hooks import Hook  # noqa: E402
from mmengine.model import is_model_wrapper  # noqa: E402
from mmpretrain.registry import HOOKS  # noqa: E402

CONFIG = 'configs/tip_f_digits_16shot.py'
PATHS = ('feature_bank', 'image')


# ---------------------------------------------------------------------------------------------------------
# the counting hook
# ---------------------------------------------------------------------------------------------------------
@HOOKS.register_module()
class ClipForwardCounterHook(Hook):
    """Count CLIP image forward passes (``clip.encode_image`` calls and images) by phase of the run.

    ``encode_image`` of ``model.backbone.clip`` is wrapped from ``before_run`` to ``after_run``. Each call is
    attributed to one phase:

    - ``before``: before the first ``before_train_epoch`` (text classifier, cache views, ...);
    - ``train_step``: inside a train iteration (``before_train_iter`` .. ``after_train_iter``) of the window;
    - ``train_other``: elsewhere in the window (e.g. hooks at the end of an epoch encoding a split);
    - ``after``: after the last ``after_train_epoch`` (alpha/beta search, test).

    The window opens at the first ``before_train_epoch`` and closes at ``after_train``, which the loop calls
    right after the last ``after_train_epoch``. With the ``HIGHEST`` priority this hook's ``before_*`` and
    ``after_train`` run before any other hook's, so the window holds every hook's ``before_train_epoch`` and
    ``after_train_epoch``.

    It also times the window: data loading (from the start of an epoch or the end of the previous iteration
    to ``before_train_iter``), train steps, CLIP ``encode_image`` inside train steps, checkpoint saving
    (``runner.save_checkpoint``, wrapped too) and the rest.

    Attributes:
        calls (dict): phase -> number of ``encode_image`` calls.
        images (dict): phase -> number of images encoded.
        seconds (dict): 'window', 'data', 'step', 'step_encode', 'other_encode' -> seconds.
    """

    priority = 'HIGHEST'
    PHASES = ('before', 'train_step', 'train_other', 'after')

    def __init__(self):
        self.calls = dict.fromkeys(self.PHASES, 0)
        self.images = dict.fromkeys(self.PHASES, 0)
        self.seconds = dict(window=0., data=0., step=0., step_encode=0., other_encode=0., checkpoint=0.)
        self.epochs = 0
        self.iters = 0
        self._phase = 'before'
        self._in_step = False
        self._clip = None
        self._had_attr = False
        self._orig = None
        self._runner = None
        self._t_window = None
        self._t_mark = None
        self._t_iter = None

    # -- encode_image wrapper --------------------------------------------------------------------------
    def _current(self) -> str:
        if self._phase == 'window':
            return 'train_step' if self._in_step else 'train_other'
        return self._phase

    def before_run(self, runner):
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        clip = model.backbone.clip
        clip = clip.module if is_model_wrapper(clip) else clip
        self._clip, self._had_attr = clip, 'encode_image' in vars(clip)
        self._orig = orig = clip.encode_image

        def encode_image(image, *args, **kwargs):
            phase = self._current()
            self.calls[phase] += 1
            self.images[phase] += int(image.shape[0])
            start = time.perf_counter()
            try:
                return orig(image, *args, **kwargs)
            finally:
                if phase == 'train_step':
                    self.seconds['step_encode'] += time.perf_counter() - start
                elif phase == 'train_other':
                    self.seconds['other_encode'] += time.perf_counter() - start

        clip.encode_image = encode_image  # an instance attribute shadows the method

        self._runner = runner
        save = runner.save_checkpoint

        def save_checkpoint(*args, **kwargs):  # CheckpointHook saves through runner.save_checkpoint
            start = time.perf_counter()
            try:
                return save(*args, **kwargs)
            finally:
                if self._phase == 'window':
                    self.seconds['checkpoint'] += time.perf_counter() - start

        runner.save_checkpoint = save_checkpoint

    def after_run(self, runner):
        if self._clip is None:
            return
        del self._runner.save_checkpoint  # back to the Runner method
        if self._had_attr:
            self._clip.encode_image = self._orig
        else:
            del self._clip.encode_image
        self._clip = None

    # -- the training window ---------------------------------------------------------------------------
    def before_train_epoch(self, runner):
        now = time.perf_counter()
        if self._t_window is None:
            self._t_window, self._phase = now, 'window'
        self._t_mark = now
        self.epochs += 1

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        now = time.perf_counter()
        self.seconds['data'] += now - self._t_mark
        self._t_iter, self._in_step = now, True

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        now = time.perf_counter()
        self.seconds['step'] += now - self._t_iter
        self._t_mark, self._in_step = now, False
        self.iters += 1

    def after_train(self, runner):
        if self._t_window is not None:
            self.seconds['window'] = time.perf_counter() - self._t_window
        self._phase = 'after'


# ---------------------------------------------------------------------------------------------------------
# one run
# ---------------------------------------------------------------------------------------------------------
def run_one(config, work_dir, path, seed, epochs, name, verbose, extra_options=()):
    """Train ``config`` with ``train_from=path`` and ``fewshot_seed=seed``; return a result row."""
    from mmengine.config import Config

    from tip_adapter_mm.launch import build_runner, merge_train_args, parse_train_args
    options = [f'train_from={path}', f'fewshot_seed={seed}', f'experiment_name={name}']
    if epochs is not None:
        options.append(f'max_epochs={epochs}')
    if not verbose:
        options.append('log_level=ERROR')
    options.extend(extra_options)
    args = parse_train_args([config, '--work-dir', work_dir, '--cfg-options', *options])
    cfg = merge_train_args(Config.fromfile(args.config), args)  # what main_train does for these arguments
    runner = build_runner(cfg)
    counter = ClipForwardCounterHook()
    runner.register_hook(counter)
    runner.train()
    with open(os.path.join(work_dir, 'results.json')) as f:
        res = json.load(f)
    timings = res.get('timings', {})
    return dict(
        path=path, seed=seed, work_dir=work_dir, trained_in=res.get('trained_in'),
        max_epochs=res.get('max_epochs'), epochs_run=counter.epochs, iters=counter.iters,
        train_s=timings.get('train'), total_s=timings.get('total'), timings=timings,
        test_top1=res.get('test_top1'), val_top1=res.get('val_top1'), selected_epoch=res.get('selected_epoch'),
        alpha=res.get('alpha'), beta=res.get('beta'), results_seed=res.get('seed'),
        calls=dict(counter.calls), images=dict(counter.images), seconds=dict(counter.seconds))


# ---------------------------------------------------------------------------------------------------------
# printing
# ---------------------------------------------------------------------------------------------------------
def fmt(value, spec='.2f', none='-'):
    return none if value is None else format(value, spec)


def mean(values):
    values = [v for v in values if v is not None]
    return statistics.fmean(values) if values else None


def std(values):
    values = [v for v in values if v is not None]
    return statistics.stdev(values) if len(values) > 1 else 0.


def print_runs(rows):
    print('\nPer run (train = results.json timings["train"], the epochs loop; CLIP fwd = encode_image calls / '
          'images in training)')
    head = (f"{'path':<13} {'seed':>4} {'trained_in':<19} {'ep':>3} {'it':>3} {'train s':>8} {'total s':>8} "
            f"{'test top1':>9} {'val top1':>8} {'sel ep':>6} {'CLIP fwd (step)':>16} {'CLIP fwd (other)':>16}")
    print(head)
    print('-' * len(head))
    for r in rows:
        step = f"{r['calls']['train_step']} / {r['images']['train_step']}"
        other = f"{r['calls']['train_other']} / {r['images']['train_other']}"
        print(f"{r['path']:<13} {r['seed']:>4} {str(r['trained_in']):<19} {r['epochs_run']:>3} {r['iters']:>3} "
              f"{fmt(r['train_s'], '.3f'):>8} {fmt(r['total_s'], '.3f'):>8} {fmt(r['test_top1']):>9} "
              f"{fmt(r['val_top1']):>8} {str(r['selected_epoch']):>6} {step:>16} {other:>16}")

    print('\nTraining window breakdown (seconds, measured by the hook) and CLIP forwards outside the window')
    head = (f"{'path':<13} {'seed':>4} {'window':>7} {'data':>7} {'steps':>7} {'(CLIP)':>7} {'ckpt':>7} "
            f"{'rest':>7} {'(CLIP)':>7} {'fwd before (calls/imgs)':>24} {'fwd after (calls/imgs)':>23}")
    print(head)
    print('-' * len(head))
    for r in rows:
        s = r['seconds']
        rest = s['window'] - s['data'] - s['step'] - s['checkpoint']
        before = f"{r['calls']['before']} / {r['images']['before']}"
        after = f"{r['calls']['after']} / {r['images']['after']}"
        print(f"{r['path']:<13} {r['seed']:>4} {s['window']:>7.3f} {s['data']:>7.3f} {s['step']:>7.3f} "
              f"{s['step_encode']:>7.3f} {s['checkpoint']:>7.3f} {rest:>7.3f} {s['other_encode']:>7.3f} "
              f"{before:>24} {after:>23}")
    print('  data: loading/collating batches; steps: train_step (forward, loss, backward, optimizer), of which '
          '(CLIP) encode_image;\n  ckpt: runner.save_checkpoint (CheckpointHook, every epoch); rest: other '
          'hooks and loop overhead (epoch selection on val, logging, ...),\n  of which (CLIP) encode_image '
          'outside train steps (e.g. a split encoded lazily by a hook).')


def summarize(rows, paths):
    by = {p: [r for r in rows if r['path'] == p] for p in paths}
    print('\nSummary over seeds', sorted({r['seed'] for r in rows}), '(mean ± std)')
    head = (f"{'path':<13} {'test top1':>14} {'val top1':>14} {'sel ep':>6} {'train s':>14} {'total s':>14} "
            f"{'CLIP calls/run':>14} {'CLIP imgs/run':>14}")
    print(head)
    print('-' * len(head))
    stats = {}
    for p, rs in by.items():
        if not rs:
            continue
        st = dict(
            test=mean([r['test_top1'] for r in rs]), test_std=std([r['test_top1'] for r in rs]),
            val=mean([r['val_top1'] for r in rs]), val_std=std([r['val_top1'] for r in rs]),
            sel=mean([r['selected_epoch'] for r in rs]),
            train=mean([r['train_s'] for r in rs]), train_std=std([r['train_s'] for r in rs]),
            total=mean([r['total_s'] for r in rs]), total_std=std([r['total_s'] for r in rs]),
            calls=mean([r['calls']['train_step'] + r['calls']['train_other'] for r in rs]),
            images=mean([r['images']['train_step'] + r['images']['train_other'] for r in rs]),
            step_calls=mean([r['calls']['train_step'] for r in rs]),
            step_images=mean([r['images']['train_step'] for r in rs]))
        stats[p] = st
        print(f"{p:<13} {st['test']:>7.2f} ± {st['test_std']:<4.2f} {st['val']:>7.2f} ± {st['val_std']:<4.2f} "
              f"{st['sel']:>6.1f} {st['train']:>7.3f} ± {st['train_std']:<4.2f} "
              f"{st['total']:>7.3f} ± {st['total_std']:<4.2f} {st['calls']:>14.1f} {st['images']:>14.1f}")
    print('  (CLIP calls/imgs per run: every encode_image in the training window, train steps and hooks)')

    checks = []
    if 'feature_bank' in stats and 'image' in stats:
        fb, im = stats['feature_bank'], stats['image']
        diff = fb['test'] - im['test']
        ratio = im['train'] / fb['train'] if fb['train'] else float('inf')
        ratio_total = im['total'] / fb['total'] if fb['total'] else float('inf')
        steps = {p: mean([r['seconds']['step'] + r['seconds']['data'] for r in by[p]]) for p in by}
        ratio_steps = steps['image'] / steps['feature_bank'] if steps['feature_bank'] else float('inf')
        no_ckpt = {p: mean([r['train_s'] - r['seconds']['checkpoint'] for r in by[p]]) for p in by}
        ratio_no_ckpt = no_ckpt['image'] / no_ckpt['feature_bank'] if no_ckpt['feature_bank'] else float('inf')
        print('\nSide by side (feature_bank vs image)')
        print(f"  mean test top-1: feature_bank {fb['test']:.2f}  image {im['test']:.2f}  "
              f"difference (feature_bank - image) {diff:+.2f} points")
        print(f"  mean val top-1:  feature_bank {fb['val']:.2f}  image {im['val']:.2f}  "
              f"difference {fb['val'] - im['val']:+.2f} points")
        print(f"  training wall time (timings['train']): image / feature_bank = {im['train']:.3f} s / "
              f"{fb['train']:.3f} s = {ratio:.2f}x")
        print(f"  total wall time (timings['total']):    image / feature_bank = {im['total']:.3f} s / "
              f"{fb['total']:.3f} s = {ratio_total:.2f}x")
        print(f"  training minus checkpoint saving:      image / feature_bank = {no_ckpt['image']:.3f} s / "
              f"{no_ckpt['feature_bank']:.3f} s = {ratio_no_ckpt:.2f}x")
        print(f"  data loading + train steps only:       image / feature_bank = {steps['image']:.3f} s / "
              f"{steps['feature_bank']:.3f} s = {ratio_steps:.2f}x")
        print(f"  CLIP image forwards in training per run (train steps): feature_bank {fb['step_calls']:.0f} calls "
              f"/ {fb['step_images']:.0f} images; image {im['step_calls']:.0f} calls / {im['step_images']:.0f} "
              'images')
        print(f"  CLIP image forwards in the training window per run (all):  feature_bank {fb['calls']:.0f} calls "
              f"/ {fb['images']:.0f} images; image {im['calls']:.0f} calls / {im['images']:.0f} images")
        checks = [
            ('feature_bank test top-1 within 1 point of image (not lower by more than 1)', diff >= -1.0,
             f'{diff:+.2f} points'),
            ('training time ratio image / feature_bank >= 10x', ratio >= 10., f'{ratio:.2f}x'),
            ('0 CLIP image forwards in feature_bank train steps', fb['step_calls'] == 0,
             f"{fb['step_calls']:.0f} calls"),
            ('0 CLIP image forwards in the whole feature_bank training window (train steps and hooks)',
             fb['calls'] == 0,
             f"{fb['calls']:.0f} calls / {fb['images']:.0f} images"),
        ]
        print('\nTargets')
        for text, ok, value in checks:
            print(f"  [{'PASS' if ok else 'FAIL'}] {text}: {value}")
    return stats, checks


# ---------------------------------------------------------------------------------------------------------
def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--seeds', type=int, nargs='+', default=[1, 2, 3], help='few-shot seeds (1 2 3)')
    parser.add_argument('--paths', nargs='+', choices=PATHS, default=list(PATHS), help='data paths to run')
    parser.add_argument('--epochs', type=int, default=None,
                        help='override max_epochs (default: the config\'s, 20)')
    parser.add_argument('--config', default=CONFIG, help=f'config (default {CONFIG})')
    parser.add_argument('--work-dir', default=None,
                        help='parent of the runs\' work dirs (kept); default: a temporary dir, removed')
    parser.add_argument('--threads', type=int, default=1, help='torch threads (default 1)')
    parser.add_argument('--no-warmup', action='store_true', help='skip the untimed 1-epoch warm-up runs')
    parser.add_argument('--cfg-options', nargs='+', default=[], metavar='KEY=VALUE',
                        help='extra config overrides for every run, e.g. default_hooks.checkpoint.interval=100')
    parser.add_argument('--json', default=None, help='also write the rows and the summary to this file')
    parser.add_argument('--verbose', action='store_true', help='keep mmengine\'s INFO log on the console')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.epochs is not None and args.epochs < 1:
        raise SystemExit('--epochs must be >= 1')
    config = pathlib.Path(args.config)
    if not config.is_file() and not config.is_absolute() and (REPO / config).is_file():
        config = REPO / config  # the default config, or another one named relative to the repository
    config = str(config.resolve())
    out_root = pathlib.Path(args.work_dir).resolve() if args.work_dir else None
    json_out = pathlib.Path(args.json).resolve() if args.json else None
    os.chdir(REPO)  # the configs' data paths are relative to the repository root
    warnings.filterwarnings('ignore')
    torch.set_num_threads(args.threads)

    from tip_adapter_mm.demo import ensure_demo_assets
    ensure_demo_assets('data')
    import tip_adapter_mm  # noqa: F401  (registers the project's modules)

    tmp = None
    if out_root is None:
        tmp = out_root = pathlib.Path(tempfile.mkdtemp(prefix='bench_finetune_'))
    out_root.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime('%Y%m%d_%H%M%S')
    print(f'config {args.config}, seeds {args.seeds}, paths {args.paths}, options {args.cfg_options}, '
          f"epochs {args.epochs if args.epochs is not None else 'config default'}, torch threads "
          f'{torch.get_num_threads()}, work dirs under {out_root}' + (' (temporary)' if tmp else ''))
    start = time.perf_counter()
    rows = []
    try:
        if not args.no_warmup:
            for path in args.paths:
                run_one(config, str(out_root / f'warmup_{path}'), path, args.seeds[0], 1,
                        f'bench_ft_warmup_{path}_{stamp}', args.verbose, args.cfg_options)
            print(f'warm-up done ({time.perf_counter() - start:.1f} s)')
        for seed in args.seeds:
            # alternate the order of the paths between seeds so that neither always runs first
            order = args.paths if seed % 2 else list(reversed(args.paths))
            for path in order:
                t0 = time.perf_counter()
                row = run_one(config, str(out_root / f'{path}_seed{seed}'), path, seed, args.epochs,
                              f'bench_ft_{path}_s{seed}_{stamp}', args.verbose, args.cfg_options)
                rows.append(row)
                print(f"seed {seed} {path:<13} train {row['train_s']:.3f} s, total {row['total_s']:.3f} s, "
                      f"test top-1 {row['test_top1']:.2f}, val top-1 {fmt(row['val_top1'])}, selected epoch "
                      f"{row['selected_epoch']}, CLIP fwd in training {row['calls']['train_step']} calls / "
                      f"{row['images']['train_step']} images ({time.perf_counter() - t0:.1f} s)", flush=True)
        rows.sort(key=lambda r: (args.paths.index(r['path']), r['seed']))
        problems = []
        expected = dict(feature_bank='FeatureBankDataset', image='SeededImageDataset')
        for r in rows:
            if r['trained_in'] != expected[r['path']]:
                problems.append(f"{r['path']} seed {r['seed']}: results.json trained_in={r['trained_in']!r}")
            if r['results_seed'] != r['seed']:
                problems.append(f"{r['path']} seed {r['seed']}: results.json 'seed' is {r['results_seed']!r}")
        print_runs(rows)
        stats, checks = summarize(rows, args.paths)
        if problems:
            print('\nConsistency notes')
            for p in problems:
                print('  ' + p)
        print(f'\nbenchmark wall time {time.perf_counter() - start:.1f} s')
        if json_out:
            json_out.parent.mkdir(parents=True, exist_ok=True)
            json_out.write_text(json.dumps(dict(args=vars(args), rows=rows, summary=stats,
                                                checks=[dict(target=t, ok=o, value=v) for t, o, v in checks],
                                                notes=problems), indent=2))
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == '__main__':
    main()
