#!/usr/bin/env python
"""Benchmark of the Tip-Adapter (beta, alpha) grid search.

1. ``tip_adapter_mm.functional.search_tip_hparams`` against a faithful re-implementation of the official
   ``utils.py:search_hp`` double loop (len(beta) x len(alpha) steps, each recomputing the affinity and the
   CLIP logits, dense ``exp(...) @ one_hot``, ``topk(1)`` accuracy, strict ``>``), on the same random data:
   chosen (beta, alpha, acc), agreement, wall times and speed-up.
2. Peak memory of our search at ImageNet shape (M=50,000 queries, C=1000, K=16 -> N=16,000, D=1024), measured
   in a child process (peak RSS growth over the RSS after the inputs are allocated), with a reduced beta grid
   since the peak does not depend on the number of beta values.

Usage::

    python benchmarks/bench_search.py [--queries M] [--classes C] [--shots K] [--dim D] [--seed S]
        [--search-scale 7 3] [--search-step 200 20] [--threads T] [--skip-memory]

Both methods run in float32 on the CPU with the same number of threads (``--threads``, default 1: on a
shared 2-core machine a second OpenMP thread stalls whenever another process holds the other core, which
makes timings of both methods erratic; pass ``--threads 2`` to use both cores).
"""
import argparse
import importlib.util
import json
import math
import os
import pathlib
import resource
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

REPO = pathlib.Path(__file__).resolve().parents[1]


def load_functional():
    """``tip_adapter_mm.functional`` without the package ``__init__`` (which imports the whole mm* stack)."""
    path = REPO / 'tip_adapter_mm' / 'functional.py'
    if not path.is_file():
        from tip_adapter_mm import functional
        return functional
    spec = importlib.util.spec_from_file_location('_tip_adapter_mm_functional_bench', path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


tf = load_functional()


# ---------------------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------------------
def make_data(m, c, k, d, seed, dtype=torch.float32):
    """CLIP-like random data on which the accuracy depends on beta and alpha.

    Image features (queries and cache keys alike) are a common "image" direction plus their class prototype
    plus noise in a shared 8-dimensional subspace, so that same-class affinities (~0.5) are only somewhat
    higher than other-class ones (~0.4), as with CLIP image features. The text classifier is a common "text"
    direction plus a small noisy copy of the prototypes, so zero-shot logits 100 f Wᵀ differ by a few units
    between classes. Zero-shot and cache make partly independent errors and the best (beta, alpha) lies
    inside the grid (seed 0, default shape: zero-shot ~81 %, best ~91 %).
    """
    gen = torch.Generator().manual_seed(seed)
    protos = F.normalize(torch.randn(c, d, generator=gen), dim=-1)
    noisy = F.normalize(protos + 2.5 * torch.randn(c, d, generator=gen) / math.sqrt(d), dim=-1)
    text_common = F.normalize(torch.randn(d, generator=gen), dim=0)
    clip_weights = F.normalize(text_common + 0.2 * noisy, dim=-1)
    image_common = F.normalize(torch.randn(d, generator=gen), dim=0)
    rank = 8
    basis = F.normalize(torch.randn(rank, d, generator=gen), dim=-1)

    def images(lab):
        nuisance = torch.randn(lab.numel(), rank, generator=gen) @ basis / math.sqrt(rank)
        return F.normalize(image_common + 0.5 * protos[lab] + 1.2 * nuisance, dim=-1)

    labels = torch.randint(0, c, (m,), generator=gen)
    features = images(labels)
    cache_labels = torch.arange(c).repeat_interleave(k)  # the usual cache order: K entries per class
    cache_keys = images(cache_labels)
    return tuple(t.to(dtype) if t.is_floating_point() else t
                 for t in (features, labels, clip_weights, cache_keys, cache_labels))


# ---------------------------------------------------------------------------------------------------------
# the official search, re-implemented
# ---------------------------------------------------------------------------------------------------------
def official_cls_acc(output, target, topk=1):
    """``utils.py:cls_acc`` (``.item()`` in place of ``float(...numpy())``, same value)."""
    pred = output.topk(topk, 1, True, True)[1].t()
    correct = pred.eq(target.view(1, -1).expand_as(pred))
    acc = correct[:topk].reshape(-1).float().sum(0, keepdim=True).item()
    return 100 * acc / target.shape[0]


@torch.no_grad()
def official_search_hp(search_scale, search_step, features, labels, clip_weights, cache_keys, cache_values):
    """``utils.py:search_hp`` with the official layouts: clip_weights [D, C], cache_keys [D, N],
    cache_values one-hot [N, C]."""
    beta_list = [i * (search_scale[0] - 0.1) / search_step[0] + 0.1 for i in range(search_step[0])]
    alpha_list = [i * (search_scale[1] - 0.1) / search_step[1] + 0.1 for i in range(search_step[1])]
    best_acc = 0
    best_beta, best_alpha = 0, 0
    for beta in beta_list:
        for alpha in alpha_list:
            affinity = features @ cache_keys
            cache_logits = ((-1) * (beta - beta * affinity)).exp() @ cache_values
            clip_logits = 100. * features @ clip_weights
            tip_logits = clip_logits + cache_logits * alpha
            acc = official_cls_acc(tip_logits, labels)
            if acc > best_acc:
                best_acc = acc
                best_beta = beta
                best_alpha = alpha
    return best_beta, best_alpha, best_acc


# ---------------------------------------------------------------------------------------------------------
# memory (child process)
# ---------------------------------------------------------------------------------------------------------
def read_status_kb(field):
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1])
    return None


def reset_peak_rss():
    """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS (Linux >= 4.0). True on success."""
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        return True
    except OSError:
        return False


def memory_child(args):
    torch.set_num_threads(args.threads)
    m, c, k, d = args.queries, args.classes, args.shots, args.dim
    n = c * k
    gen = torch.Generator().manual_seed(args.seed)
    # inputs allocated in place (no full-size temporaries), so that the peak before the search stays low
    features = torch.randn(m, d, generator=gen)
    features.div_(features.norm(dim=1, keepdim=True))
    cache_keys = torch.randn(n, d, generator=gen)
    cache_keys.div_(cache_keys.norm(dim=1, keepdim=True))
    clip_weights = torch.randn(c, d, generator=gen)
    clip_weights.div_(clip_weights.norm(dim=1, keepdim=True))
    labels = torch.randint(0, c, (m,), generator=gen)
    cache_labels = torch.arange(c).repeat_interleave(k)
    beta_grid, alpha_grid = tf.tip_search_grids(args.search_scale, args.search_step)
    beta_grid = [beta_grid[0], beta_grid[-1]]  # peak memory does not depend on the number of betas

    ru_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    reset_ok = reset_peak_rss()
    rss_base = read_status_kb('VmRSS')
    hwm_base = read_status_kb('VmHWM')
    t0 = time.perf_counter()
    result = tf.search_tip_hparams(features, labels, clip_weights, cache_keys, cache_labels,
                                   beta_grid, alpha_grid)
    elapsed = time.perf_counter() - t0
    hwm_after = read_status_kb('VmHWM')
    ru_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    input_bytes = sum(t.numel() * t.element_size()
                      for t in (features, cache_keys, clip_weights, labels, cache_labels))
    print(json.dumps(dict(
        shape=[m, c, k, n, d], betas=beta_grid, n_alpha=len(alpha_grid), result=result, seconds=elapsed,
        input_bytes=input_bytes, reset_ok=reset_ok, rss_base_kb=rss_base, hwm_base_kb=hwm_base,
        hwm_after_kb=hwm_after, ru_before_kb=ru_before, ru_after_kb=ru_after)))


def run_memory_measurement(args):
    cmd = [sys.executable, os.path.abspath(__file__), '--_memory-child',
           '--queries', '50000', '--classes', '1000', '--shots', '16', '--dim', str(args.dim),
           '--seed', str(args.seed), '--threads', str(args.threads),
           '--search-scale', *map(str, args.search_scale), '--search-step', *map(str, args.search_step)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f'memory child failed ({proc.returncode}):\n{proc.stderr}')
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------------------
def gib(nbytes):
    return nbytes / 2 ** 30


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--queries', type=int, default=200, help='M, validation queries')
    parser.add_argument('--classes', type=int, default=100, help='C')
    parser.add_argument('--shots', type=int, default=16, help='K, cache entries per class')
    parser.add_argument('--dim', type=int, default=1024, help='D (1024 = RN50)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--search-scale', type=float, nargs=2, default=[7., 3.], metavar=('BETA', 'ALPHA'))
    parser.add_argument('--search-step', type=int, nargs=2, default=[200, 20], metavar=('BETA', 'ALPHA'))
    parser.add_argument('--threads', type=int, default=1, help='torch threads for both methods (default 1)')
    parser.add_argument('--repeats', type=int, default=3, help='timed runs of our search (median reported)')
    parser.add_argument('--skip-memory', action='store_true', help='skip the ImageNet-shape memory run')
    parser.add_argument('--_memory-child', action='store_true', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._memory_child:
        memory_child(args)
        return

    torch.set_num_threads(args.threads)
    m, c, k, d = args.queries, args.classes, args.shots, args.dim
    n = c * k
    steps = args.search_step[0] * args.search_step[1]
    print(f'torch {torch.__version__}, {torch.get_num_threads()} thread(s), {os.cpu_count()} CPU(s), float32')
    print(f'1) search on M={m} queries, C={c} classes, K={k} shots (N={n} cache entries), D={d}, '
          f'seed={args.seed}; grid scale={args.search_scale} steps={args.search_step} ({steps} pairs)')

    features, labels, clip_weights, cache_keys, cache_labels = make_data(m, c, k, d, args.seed)
    beta_grid, alpha_grid = tf.tip_search_grids(args.search_scale, args.search_step)
    zero_shot = tf.topk_accuracy(100. * features @ clip_weights.t(), labels)

    # ours: one warm-up, then the median of --repeats runs
    ours = tf.search_tip_hparams(features, labels, clip_weights, cache_keys, cache_labels, beta_grid, alpha_grid)
    times = []
    for _ in range(max(1, args.repeats)):
        t0 = time.perf_counter()
        ours = tf.search_tip_hparams(features, labels, clip_weights, cache_keys, cache_labels,
                                     beta_grid, alpha_grid)
        times.append(time.perf_counter() - t0)
    t_ours = sorted(times)[len(times) // 2]
    counts = tf.tip_search_correct_counts(features, labels, clip_weights, cache_keys, cache_labels,
                                          beta_grid, alpha_grid)
    acc_grid = 100. * counts.double() / m

    # official: the layouts of the official code, one run (it dominates the benchmark)
    clip_weights_dc = clip_weights.t().contiguous()
    cache_keys_dn = cache_keys.t().contiguous()
    cache_values = F.one_hot(cache_labels, c).float()
    t0 = time.perf_counter()
    official = official_search_hp(args.search_scale, args.search_step, features, labels, clip_weights_dc,
                                  cache_keys_dn, cache_values)
    t_official = time.perf_counter() - t0

    agree = (ours[0], ours[1]) == (official[0], official[1]) and ours[2] == official[2]
    print(f'   zero-shot accuracy {zero_shot:.2f}%; over the grid accuracy ranges '
          f'{acc_grid.min():.2f}% .. {acc_grid.max():.2f}% '
          f'({int((counts == counts.max()).sum())} pair(s) reach the best)')
    print(f'   {"method":<34}{"beta":>10}{"alpha":>10}{"acc %":>10}{"time s":>12}')
    print(f'   {"ours (search_tip_hparams)":<34}{ours[0]:>10.4f}{ours[1]:>10.4f}{ours[2]:>10.2f}{t_ours:>12.3f}'
          f'   (median of {len(times)}: ' + ', '.join(f'{t:.3f}' for t in times) + ')')
    print(f'   {"official loop (re-implemented)":<34}{official[0]:>10.4f}{official[1]:>10.4f}{official[2]:>10.2f}'
          f'{t_official:>12.3f}   ({1e3 * t_official / steps:.2f} ms per step)')
    print(f'   same (beta, alpha, acc): {agree};  speed-up: {t_official / t_ours:.1f}x')
    if not agree:
        i = beta_grid.index(official[0]) if official[0] in beta_grid else None
        j = alpha_grid.index(official[1]) if official[1] in alpha_grid else None
        if i is not None and j is not None:
            print(f'   our count grid at the official choice: {acc_grid[i, j]:.2f}% '
                  '(a float32 summation-order difference on a near-tied logit)')

    mem = None
    if not args.skip_memory:
        print('2) peak memory of our search at ImageNet shape (M=50000, C=1000, K=16 -> N=16000, '
              f'D={d}), child process, float32, {args.threads} thread(s)')
        mem = run_memory_measurement(args)
        peak_kb = mem['hwm_after_kb'] - mem['rss_base_kb']
        ru_kb = mem['ru_after_kb'] - mem['ru_before_kb']
        print(f'   reduced beta grid: {len(mem["betas"])} beta values '
              f'({mem["betas"][0]:.4f}, {mem["betas"][1]:.4f}) x {mem["n_alpha"]} alpha values '
              '(the peak does not depend on the number of betas); unstructured random data '
              f'(the accuracy is meaningless); search took {mem["seconds"]:.1f} s')
        print(f'   inputs: {gib(mem["input_bytes"]):.3f} GiB; RSS after allocating them: '
              f'{mem["rss_base_kb"] / 2 ** 20:.3f} GiB (peak mark reset: {mem["reset_ok"]})')
        print(f'   peak RSS growth during the search (VmHWM - VmRSS before): {peak_kb / 2 ** 20:.3f} GiB; '
              f'ru_maxrss growth: {ru_kb / 2 ** 20:.3f} GiB')
        dense_fp32 = 50000 * 16000 * 4
        print(f'   dense official formulation at this shape: the [M, N] affinity alone is '
              f'{gib(dense_fp32):.2f} GiB = {dense_fp32 / 1e9:.1f} GB in float32 '
              f'({gib(dense_fp32 / 2):.2f} GiB = {dense_fp32 / 2e9:.1f} GB in fp16 as in the official '
              f'code); `((-1) * (beta - beta * affinity)).exp()` keeps up to 3 such arrays alive '
              f'({gib(3 * dense_fp32):.2f} GiB float32 / {gib(1.5 * dense_fp32):.2f} GiB fp16)')

    print()
    print('Summary')
    print(f'  {"item":<58}{"value":>22}')
    rows = [
        ('shape M, C, K, N, D', f'{m}, {c}, {k}, {n}, {d}'),
        ('grid pairs', f'{steps}'),
        ('ours: beta, alpha, acc %', f'{ours[0]:.4f}, {ours[1]:.4f}, {ours[2]:.2f}'),
        ('official loop: beta, alpha, acc %', f'{official[0]:.4f}, {official[1]:.4f}, {official[2]:.2f}'),
        ('same choice', str(agree)),
        ('ours wall time (s)', f'{t_ours:.3f}'),
        ('official loop wall time (s)', f'{t_official:.3f}'),
        ('speed-up (official / ours)', f'{t_official / t_ours:.1f}x'),
    ]
    if mem is not None:
        rows += [
            ('ImageNet shape: our peak RSS growth (GiB, 2 betas)',
             f'{(mem["hwm_after_kb"] - mem["rss_base_kb"]) / 2 ** 20:.3f}'),
            ('ImageNet shape: dense [M, N] affinity alone (GiB, fp32)', f'{gib(50000 * 16000 * 4):.2f}'),
        ]
    for name, value in rows:
        print(f'  {name:<58}{value:>22}')


if __name__ == '__main__':
    main()
