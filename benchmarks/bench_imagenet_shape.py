#!/usr/bin/env python
"""Benchmark of the memory and time of the methods at ImageNet shape (issue 14).

Shape: C=1000 classes x K=16 shots (N=16,000 cache entries), D=1024 features, 10 augmented views per cache
image, 50,000 test images (``--quick``: C=100, D=256, 5,000 test images). Stored features (random, unit norm)
stand in for images; every other step is the project's code. Each section prints the current design side by
side with the previous design or the floor, measured in the same run:

1. **Peak RSS** of a Tip-Adapter, a Tip-F and a Meta-Adapter run, each in a fresh child process (its
   ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` at the end): the cache built from the [V, N, D] view bank
   (``cache_keys_from_views``, ``CacheHead``/``MetaAdapterHead.set_cache``), 3 training steps of batch 256 for
   Tip-F and Meta-Adapter (AdamW, the trainable keys / adapter), then a test loop over the 50,000 stored test
   features as mmengine's ``TestLoop.run_iter`` runs it: ``model.test_step`` (``CLIPDataPreprocessor``, the
   backbone's stored-feature pass-through, the head's ``predict``: softmax scores attached to ``DataSample``),
   ``Evaluator.process``, ``Evaluator.evaluate``, batch 64. The previous design, in its own child: mmpretrain's
   ``Accuracy`` (keeps every image's [C] ``pred_score``), ``tip_logits`` with its three [B, N] temporaries,
   Meta-Adapter refining its class weights on every test batch, the view bank held twice (the Tip-F feature
   bank's copy; kept by the training-free run too). The (beta, alpha) search is not part of these children: its
   own peak is measured by ``bench_search.py``. Target: <= 3 GiB at full shape.
2. **Checkpoint bytes per epoch** of a real Tip-F and Meta-Adapter run on the embedded digits demo (the files
   ``epoch_*.pth`` in the work dir, ``launch.main_train``), next to their floor: the bytes of the head's
   trainable tensors (what an epoch changes), and the same ratio applied to the ImageNet shape.
3. **Search time vs its floor**: ``functional.search_tip_hparams`` (official grid 200 x 20) on M validation
   features at full N, next to its floor timed alone: the query-key and query-text matmuls and 200 exp passes
   over the [M, N] affinity each followed by the per-class sum (``class_sum``).
4. **Epoch time vs N and C** (C = C/4, C/2, C at K=16, batch 256): time of one training step (forward,
   backward, AdamW) of Tip-F (``tip_logits`` on trainable keys) and of Meta-Adapter (``meta_adapter_weights`` +
   ``meta_adapter_logits``), previous design next to current, the step time divided by N (linear per step: a
   flat column), and the epoch time (N / 256 steps: an epoch visits the N cache images / C x K queries, each
   step scores against all N keys / C classes, so an epoch is inherently N x N: see the printed explanation).

Usage::

    python benchmarks/bench_imagenet_shape.py [--quick] [--threads T] [--sections rss ckpt search epoch]
        [--search-queries M] [--data DIR] [--json FILE]

Torch uses ``--threads`` threads (default 1: on a shared machine timings are steadier). The full shape needs
about 3 GiB per child and several minutes on two cores.
"""
import argparse
import contextlib
import json
import os
import pathlib
import resource
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

FULL = dict(classes=1000, shots=16, dim=1024, views=10, test=50000, search=10000)
QUICK = dict(classes=100, shots=16, dim=256, views=10, test=5000, search=2000)
METHODS = ('tip', 'tipf', 'meta')
TRAIN_BATCH, TEST_BATCH = 256, 64


def previous_tip_logits(features, clip_weights, cache_keys, cache_labels, alpha, beta, logit_scale=100.):
    """The previous ``tip_logits``: ``1 - A``, ``-beta (1 - A)`` and the exp each a new [M, N] tensor."""
    from tip_adapter_mm.functional import cache_logits
    logits = logit_scale * features @ clip_weights.t()
    affinity = features @ cache_keys.t()
    return logits + alpha * cache_logits(affinity, cache_labels, clip_weights.shape[0], beta)


def gib(kib):
    return kib / 2 ** 20


def normalized(*shape, generator):
    return F.normalize(torch.randn(*shape, generator=generator), dim=-1)


# -- 1. peak RSS (child) ----------------------------------------------------------------------------------------

def child(method: str, design: str, shape: dict, threads: int) -> dict:
    """One run in this (fresh) process; returns its figures (the parent reads the peak RSS)."""
    torch.set_num_threads(threads)
    from mmengine.dataset import default_collate
    from mmengine.evaluator import Evaluator
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS
    from mmpretrain.structures import DataSample

    import tip_adapter_mm  # noqa: F401  (registration)
    from tip_adapter_mm.functional import cache_keys_from_views
    from tip_adapter_mm.models import cache_head, meta_adapter_head

    init_default_scope('mmpretrain')
    if 'StoredFeatures' not in MODELS.module_dict:
        @MODELS.register_module(name='StoredFeatures')
        class StoredFeatures(torch.nn.Module):
            """A backbone for stored features: passes [B, D] through (as ``CLIPBackbone`` does for them)."""

            def forward(self, x):
                return (x, )

    c, k, d, v, m = shape['classes'], shape['shots'], shape['dim'], shape['views'], shape['test']
    n = c * k
    previous = design == 'previous'
    g = torch.Generator().manual_seed(0)
    head = dict(type='MetaAdapterHead', num_classes=c, feat_dim=d, num_shots=k) if method == 'meta' else \
        dict(type='CacheHead', num_classes=c, feat_dim=d, num_shots=k, train_keys=method == 'tipf')
    model = MODELS.build(dict(type='ImageClassifier', data_preprocessor=dict(type='CLIPDataPreprocessor'),
                              backbone=dict(type='StoredFeatures'), head=head))
    if previous:
        cache_head.tip_logits = previous_tip_logits
        real = meta_adapter_head.MetaAdapterHead.refined_weights
        meta_adapter_head.MetaAdapterHead.refined_weights = \
            lambda self: (setattr(self, '_refined', None), real(self))[1]  # refined on every call
    refines = []
    counted = meta_adapter_head.meta_adapter_weights
    meta_adapter_head.meta_adapter_weights = lambda *a, **kw: (refines.append(1), counted(*a, **kw))[1]

    # the cache: the [V, N, D] view bank, averaged over views
    views = torch.randn(v, n, d, generator=g)
    labels = torch.arange(c).repeat_interleave(k)
    model.head.set_cache(normalized(c, d, generator=g), cache_keys_from_views(views), labels)
    bank = [views]
    if method == 'tip' and not previous:
        bank.clear()  # the training-free loop drops the views once the cache is built
    elif previous and method != 'tip':
        bank.append(views.clone())  # the feature bank's copy
    del views
    if method != 'tip':  # a few training steps: gradients and AdamW states exist during the test
        params = [p for p in model.parameters() if p.requires_grad]
        optim = torch.optim.AdamW(params, lr=1e-4, eps=1e-4)
        for _ in range(3):
            x = F.normalize(bank[0][0, :TRAIN_BATCH], dim=-1)
            loss = F.cross_entropy(model.head((x, )), labels[:TRAIN_BATCH])
            optim.zero_grad()
            loss.backward()
            optim.step()
    # the test loop: mmengine TestLoop.run_iter's calls on the stored test features
    test = normalized(m, d, generator=g)
    test_labels = torch.randint(0, c, (m, ), generator=g)
    metric = dict(type='Accuracy', topk=(1, 5)) if previous else dict(type='TopKAccuracy', topk=(1, 5))
    evaluator = Evaluator(metric)
    model.eval()
    refines.clear()
    start = time.perf_counter()
    with torch.no_grad():
        for i in range(0, m, TEST_BATCH):
            batch = default_collate([dict(inputs=test[j], data_samples=DataSample().set_gt_label(int(test_labels[j])))
                                     for j in range(i, min(i + TEST_BATCH, m))])
            outputs = model.test_step(batch)
            evaluator.process(data_samples=outputs, data_batch=batch)
    metrics = evaluator.evaluate(m)
    return dict(test_s=time.perf_counter() - start, refines=len(refines), top1=metrics['accuracy/top1'],
                peak_kib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # this process's peak, KiB


def run_child(method, design, shape, threads) -> dict:
    code = (f'import json, sys; sys.path.insert(0, {str(REPO)!r}); sys.path.insert(0, {str(REPO / "benchmarks")!r}); '
            f'import bench_imagenet_shape as b; print("RESULT", json.dumps(b.child({method!r}, {design!r}, '
            f'{shape!r}, {threads})))')
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS=str(threads)))
    if proc.returncode:
        raise RuntimeError(f'child {method}/{design} failed:\n{proc.stderr[-3000:]}')
    return json.loads([line for line in proc.stdout.splitlines() if line.startswith('RESULT ')][-1][7:])


def section_rss(shape, threads, results, previous_items):
    print(f"\n== 1. peak RSS of a run (cache from {shape['views']} views, 3 train steps, test loop over "
          f"{shape['test']} images), C={shape['classes']} K={shape['shots']} D={shape['dim']} ==")
    print(f"previous design on {min(shape['test'], previous_items)} test images only (its peak grows by about "
          "137 KiB per image at full shape: 9 GiB at 50,000, over this machine's per-process budget); the "
          "current design on all and on as many")
    print(f"{'method':8s} {'cur GiB all':>12s} {'cur GiB':>12s} {'previous GiB':>13s} {'ratio':>6s} "
          f"{'test s cur/prev':>16s} {'refines cur/prev':>17s}  target <= 3 GiB (all)")
    small = dict(shape, test=min(shape['test'], previous_items))
    for method in METHODS:
        full = run_child(method, 'current', shape, threads)
        cur = run_child(method, 'current', small, threads)
        prev = run_child(method, 'previous', small, threads)
        results[f'rss_{method}'] = dict(current_full=full, current=cur, previous=prev)
        c_gib, p_gib = gib(cur['peak_kib']), gib(prev['peak_kib'])
        print(f"{method:8s} {gib(full['peak_kib']):12.2f} {c_gib:12.2f} {p_gib:13.2f} {p_gib / c_gib:6.2f} "
              f"{cur['test_s']:7.1f}/{prev['test_s']:<8.1f} {cur['refines']:8d}/{prev['refines']:<8d}"
              f"  {'ok' if gib(full['peak_kib']) <= 3 else 'OVER'}", flush=True)
        if cur['top1'] != prev['top1']:
            print(f"   top-1 differs: {cur['top1']} (current) vs {prev['top1']} (previous)")


# -- 2. checkpoint bytes per epoch -----------------------------------------------------------------------------

def section_ckpt(data_dir, threads, results, shape):
    from tip_adapter_mm.demo import ensure_demo_assets
    from tip_adapter_mm.launch import main_train
    digits, ckpt = ensure_demo_assets(data_dir)
    print('\n== 2. checkpoint bytes per epoch (real runs on the digits demo: C=10, K=16, D=64; 2 epochs) ==')
    print(f"{'method':8s} {'epoch files':>12s} {'bytes/epoch':>12s} {'floor bytes':>12s} {'ratio':>7s} | "
          f"{'file/epoch':>20s} {'floor':>15s} {'ratio':>7s}  (the same tensors at C={shape['classes']}, "
          f"K={shape['shots']}, D={shape['dim']})")
    for method, config in (('tipf', 'configs/tip_f_digits_16shot.py'), ('meta', 'configs/meta_adapter_digits_16shot.py')):
        with tempfile.TemporaryDirectory() as work:
            options = [f'model.backbone.pretrained={ckpt}', 'max_epochs=2',
                       f'feature_store.root={os.path.join(work, "store")}', f'experiment_name=bench-{time.time_ns()}']
            options += [f'{key}.dataset.data_root={digits}' for key in ('train_dataloader', 'val_dataloader',
                                                                          'test_dataloader')]
            with open(os.path.join(work, 'console.log'), 'w') as log, contextlib.redirect_stdout(log), \
                    contextlib.redirect_stderr(log):  # the run's log (config dump, progress) stays out of the table
                main_train([str(REPO / config), '--work-dir', work, '--cfg-options', *options])
            files = sorted(f for f in os.listdir(work) if f.startswith('epoch_') and f.endswith('.pth'))
            sizes = [os.path.getsize(os.path.join(work, f)) for f in files]
            saved = torch.load(os.path.join(work, files[-1]), weights_only=True, map_location='cpu')
            kept = sorted(f for f in os.listdir(work) if f.endswith('.pth'))
        state = saved['state_dict']
        trainable = ('head.cache_keys', ) if method == 'tipf' else tuple(
            f'head.{name}' for name in ('q_proj.weight', 'k_proj.weight', 'alpha_proj.weight', 'alpha_proj.bias'))
        floor = sum(state[key].numel() * state[key].element_size() for key in trainable)
        # the same file at ImageNet shape: every tensor with the demo's C, K, N, D sizes scaled to ImageNet's,
        # the rest (config text, metadata) as measured
        c, k, d = shape['classes'], shape['shots'], shape['dim']
        demo = dict(zip((10, 16, 160, 64), (c, k, c * k, d)))
        tensors = [t for t in _tensors(saved)]
        tensor_bytes = sum(t.numel() * t.element_size() for t in tensors)
        big = sum(t.element_size() * _prod(demo.get(s, s) for s in t.shape) for t in tensors)
        big_floor = 4 * (c * k * d if method == 'tipf' else 2 * d * d + d + 1)
        per_epoch = sum(sizes) / len(sizes)
        big_file = per_epoch - tensor_bytes + big
        # what --resume needs, each tensor once: the adapter state (trainable parameters and the fixed cache /
        # text weights the head holds) and AdamW's two moments of every trainable parameter
        big_resume = sum(t.element_size() * _prod(demo.get(s, s) for s in t.shape) for t in _tensors(state)) \
            + 2 * big_floor
        # the previous design also stored the selected epoch's trainable parameters in every checkpoint's meta
        big_previous = big_file + big_floor
        results[f'ckpt_{method}'] = dict(files=files, sizes=sizes, floor=floor, kept=kept)
        results[f'ckpt_{method}'].update(imagenet_bytes=big_file, imagenet_floor=big_floor,
                                         imagenet_resume=big_resume, imagenet_previous=big_previous)
        print(f"{method:8s} {len(files):12d} {per_epoch:12.0f} {floor:12d} {per_epoch / floor:7.2f} "
              f"{big_file / 2 ** 20:13.1f} MiB {big_floor / 2 ** 20:11.1f} MiB {big_file / big_floor:7.2f}", flush=True)
        print(f"{'':8s} ImageNet shape: {big_file / 2 ** 20:.1f} MiB per epoch vs {big_resume / 2 ** 20:.1f} MiB that "
              f"--resume needs (x{big_file / big_resume:.3f}); previous design {big_previous / 2 ** 20:.1f} MiB "
              f"(x{big_previous / big_file:.2f} of now); files kept after the run: {', '.join(kept)}", flush=True)


def _tensors(obj):
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for value in obj.values():
            yield from _tensors(value)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            yield from _tensors(value)


def _prod(values):
    out = 1
    for v in values:
        out *= v
    return out


# -- 3. search time vs its floor -------------------------------------------------------------------------------

def best_of(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def section_search(shape, results, repeats):
    from tip_adapter_mm.functional import class_sum, search_tip_hparams, tip_search_grids
    c, k, d, m = shape['classes'], shape['shots'], shape['dim'], shape['search']
    n = c * k
    g = torch.Generator().manual_seed(1)
    w, keys = normalized(c, d, generator=g), normalized(n, d, generator=g)
    labels = torch.arange(c).repeat_interleave(k)
    queries, targets = normalized(m, d, generator=g), torch.randint(0, c, (m, ), generator=g)
    beta_grid, alpha_grid = tip_search_grids((7., 3.), (200, 20))
    chunk = max(1, (1 << 28) // (4 * n))

    def floor(passes):
        for i in range(0, m, chunk):
            q = queries[i:i + chunk]
            q @ w.t()
            affinity = q @ keys.t()
            out = torch.empty_like(affinity)
            for beta in beta_grid[:passes]:
                class_sum(torch.exp(torch.mul(affinity, beta, out=out), out=out), labels, c)

    ours = best_of(lambda: search_tip_hparams(queries, targets, w, keys, labels, beta_grid, alpha_grid), repeats)
    matmuls = best_of(lambda: floor(0), repeats)
    one_pass = best_of(lambda: floor(1), repeats) - matmuls
    results['search'] = dict(search_s=ours, matmuls_s=matmuls, exp_pass_s=one_pass)
    print(f'\n== 3. search (200 x 20 grid) on M={m} queries, N={n}, C={c}, D={d} ==')
    print(f'search_tip_hparams {ours:8.2f} s | floors timed alone: the two matmuls {matmuls:.2f} s (ratio '
          f'{ours / matmuls:.2f}); one exp pass + class sum over [M, N] {one_pass:.3f} s, so matmuls + one pass '
          f'per beta (200) = {matmuls + 200 * one_pass:.2f} s (ratio {ours / (matmuls + 200 * one_pass):.2f}), '
          f'+ one pass per 20 betas = {matmuls + 10 * one_pass:.2f} s (ratio '
          f'{ours / (matmuls + 10 * one_pass):.2f})', flush=True)


# -- 4. epoch time vs N and C ----------------------------------------------------------------------------------

def section_epoch(shape, results, repeats):
    from tip_adapter_mm.functional import meta_adapter_logits, meta_adapter_weights, tip_logits
    c_full, k, d = shape['classes'], shape['shots'], shape['dim']
    print(f'\n== 4. training step and epoch time vs N and C (K={k}, D={d}, batch {TRAIN_BATCH}; '
          f'best of {repeats}) ==')
    print(f"{'C':>5s} {'N':>6s} | {'Tip-F step ms cur/prev':>23s} {'us/N':>6s} {'epoch s':>8s} | "
          f"{'Meta step ms cur/prev':>22s} {'us/C':>6s} {'epoch s':>8s}")
    rows = []
    for c in (c_full // 4, c_full // 2, c_full):
        n = c * k
        g = torch.Generator().manual_seed(2)
        w, labels = normalized(c, d, generator=g), torch.arange(c).repeat_interleave(k)
        x, y = normalized(TRAIN_BATCH, d, generator=g), torch.randint(0, c, (TRAIN_BATCH, ), generator=g)
        alpha, beta = torch.tensor(1., dtype=torch.float64), torch.tensor(5.5, dtype=torch.float64)
        keys = torch.nn.Parameter(normalized(n, d, generator=g))
        tip_optim = torch.optim.AdamW([keys], lr=1e-3, eps=1e-4)
        adapter = [torch.nn.Parameter(torch.randn(d, d, generator=g) * .03) for _ in range(2)] + \
            [torch.nn.Parameter(torch.randn(1, d, generator=g) * .03), torch.nn.Parameter(torch.ones(1))]
        meta_optim = torch.optim.AdamW(adapter, lr=1e-4, eps=1e-4)
        support = keys.detach().reshape(c, k, d)

        def tip_step(fn):
            loss = F.cross_entropy(fn(x, w, keys, labels, alpha, beta), y)
            tip_optim.zero_grad()
            loss.backward()
            tip_optim.step()

        def meta_step():
            loss = F.cross_entropy(meta_adapter_logits(x, meta_adapter_weights(w, support, *adapter)), y)
            meta_optim.zero_grad()
            loss.backward()
            meta_optim.step()

        tip_step(tip_logits)  # warm-up (AdamW states)
        meta_step()
        tip_cur = best_of(lambda: tip_step(tip_logits), repeats)
        tip_prev = best_of(lambda: tip_step(previous_tip_logits), repeats)
        meta_cur = best_of(meta_step, repeats)
        steps = -(-n // TRAIN_BATCH)  # Tip-F: the N cache images; Meta-Adapter: C x K queries
        row = dict(classes=c, entries=n, tip_step_s=tip_cur, tip_prev_step_s=tip_prev, meta_step_s=meta_cur,
                   tip_epoch_s=tip_cur * steps, meta_epoch_s=meta_cur * steps)
        rows.append(row)
        print(f'{c:5d} {n:6d} | {1e3 * tip_cur:11.1f}/{1e3 * tip_prev:<11.1f} {1e6 * tip_cur / n:6.2f} '
              f'{tip_cur * steps:8.2f} | {1e3 * meta_cur:10.1f}/{"(same)":<11s} {1e6 * meta_cur / c:6.1f} '
              f'{meta_cur * steps:8.2f}', flush=True)
    results['epoch'] = rows
    first, last = rows[0], rows[-1]
    grow = last['entries'] / first['entries']
    print(f"x{grow:.0f} N: Tip-F step x{last['tip_step_s'] / first['tip_step_s']:.2f} (linear: x{grow:.0f}), "
          f"Meta step x{last['meta_step_s'] / first['meta_step_s']:.2f}; epochs x{grow:.0f} steps more, so "
          f"Tip-F epoch x{last['tip_epoch_s'] / first['tip_epoch_s']:.1f}, Meta epoch "
          f"x{last['meta_epoch_s'] / first['meta_epoch_s']:.1f} (quadratic: x{grow ** 2:.0f})")
    print('Where the N^2 / C^2 is: at fixed batch a step is linear (Tip-F: B x N x D for the affinity, its '
          'backward and AdamW on the [N, D] keys; Meta: 2 C D^2 to refine the class weights, B x C x D for the '
          'logits), but an epoch is N / B steps: Tip-F trains on the N cache images themselves and Meta-Adapter '
          'on C x K queries, and every step scores against all N keys / all C refined classes. That product is '
          'the method (the official recipe), not an implementation term; the cache term uses class_sum (no '
          '[N, C] one-hot matmul), so no step cost grows faster than N.')


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--quick', action='store_true', help='C=100, D=256, 5,000 test images')
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--sections', nargs='+', default=['rss', 'ckpt', 'search', 'epoch'],
                        choices=['rss', 'ckpt', 'search', 'epoch'])
    parser.add_argument('--search-queries', type=int, default=None)
    parser.add_argument('--previous-items', type=int, default=10000,
                        help='test images of the previous design\'s children (and of the current one beside them)')
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--data', default=str(REPO / 'data'), help='where the digits demo assets are (made)')
    parser.add_argument('--json', default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    shape = dict(QUICK if args.quick else FULL)
    if args.search_queries:
        shape['search'] = args.search_queries
    print(f'shape: {shape}, threads {args.threads}, torch {torch.__version__}')
    results = dict(shape=shape)
    if 'rss' in args.sections:
        section_rss(shape, args.threads, results, args.previous_items)
    if 'ckpt' in args.sections:
        section_ckpt(args.data, args.threads, results, shape)
    if 'search' in args.sections:
        section_search(shape, results, 1 if not args.quick else args.repeats)
    if 'epoch' in args.sections:
        section_epoch(shape, results, args.repeats)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(results, f, indent=1)


if __name__ == '__main__':
    main()
