#!/usr/bin/env python
"""Benchmark of the Tip-Adapter (beta, alpha) grid search.

1. For each size (default: M=200 queries, C=100 classes, K=16 shots; and M=1000, C=1000, K=16, i.e. N=16,000
   cache entries, the ImageNet 16-shot cache), on the same random data, side by side in one run:

   * the official ``utils.py:search_hp`` double loop, re-implemented faithfully (len(beta) x len(alpha) steps,
     each recomputing the affinity and the CLIP logits, dense ``exp(...) @ one_hot``, ``topk(1)`` accuracy,
     strict ``>``). Its steps all cost the same, so when the whole loop would take longer than
     ``--official-budget`` seconds it is timed on the first ``k`` betas (all alphas) and scaled to the grid;
     its choice on the full grid then comes from the *hoisted* official loop: the very same per-step ops, with
     the loop-invariant affinity and CLIP logits computed once and the cache logits once per beta. These are
     the same numbers as the loop's (same ops on the same inputs); the benchmark checks it on the timed betas;
   * the previous design of ``tip_search_correct_counts`` (one exp pass over the [M, N] affinity per beta and
     the [A, M, C] logits of all alphas scored by argmax), kept here under a private name;
   * the floor of that design: the two matmuls and the len(beta) exp passes alone;
   * ``tip_adapter_mm.functional.search_tip_hparams`` (exp passes over the affinity at one beta in twenty,
     only the classes that can compete with the true class scored; see ``tip_search_correct_counts``).

   It prints chosen (beta, alpha, acc), wall times and ratios, and asserts that every method makes the official
   choice (ties included).
2. Peak memory of our search at ImageNet shape (M=50,000 queries, C=1000, K=16 -> N=16,000, D=1024), measured
   in a child process (peak RSS growth over the RSS after the inputs are allocated), on the first 12 betas of
   the grid (two anchors and the betas between them: the peak does not depend on the number of betas).

Usage::

    python benchmarks/bench_search.py [--sizes 200x100x16 1000x1000x16] [--dim D] [--seed S]
        [--search-scale 7 3] [--search-step 200 20] [--threads T] [--repeats R] [--official-budget SECONDS]
        [--skip-memory]

All methods run in float32 on the CPU with the same number of threads (``--threads``, default 1: on a
shared 2-core machine a second OpenMP thread stalls whenever another process holds the other core, which
makes timings erratic; pass ``--threads 2`` to use both cores). At the default sizes the run takes 4 to 6
minutes on one thread, most of it in the official loop's hoisted reference at M=1000, C=1000 (200 one-hot
matmuls) and in the memory run.
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
    inside the grid (seed 0, M=200, C=100: zero-shot ~85 %, best 90 %; M=1000, C=1000: ~69 %, ~83 %).
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


def official_lists(search_scale, search_step):
    beta_list = [i * (search_scale[0] - 0.1) / search_step[0] + 0.1 for i in range(search_step[0])]
    alpha_list = [i * (search_scale[1] - 0.1) / search_step[1] + 0.1 for i in range(search_step[1])]
    return beta_list, alpha_list


@torch.no_grad()
def official_search_hp(search_scale, search_step, features, labels, clip_weights, cache_keys, cache_values,
                       num_betas=None, accs=None):
    """``utils.py:search_hp`` with the official layouts: clip_weights [D, C], cache_keys [D, N],
    cache_values one-hot [N, C].

    ``num_betas`` stops the loop after that many betas (for timing); ``accs`` (a dict) receives the accuracy of
    every step, keyed by (beta index, alpha index).
    """
    beta_list, alpha_list = official_lists(search_scale, search_step)
    best_acc = 0
    best_beta, best_alpha = 0, 0
    for bi, beta in enumerate(beta_list[:num_betas]):
        for ai, alpha in enumerate(alpha_list):
            affinity = features @ cache_keys
            cache_logits = ((-1) * (beta - beta * affinity)).exp() @ cache_values
            clip_logits = 100. * features @ clip_weights
            tip_logits = clip_logits + cache_logits * alpha
            acc = official_cls_acc(tip_logits, labels)
            if accs is not None:
                accs[bi, ai] = acc
            if acc > best_acc:
                best_acc = acc
                best_beta = beta
                best_alpha = alpha
    return best_beta, best_alpha, best_acc


@torch.no_grad()
def official_hoisted_accs(search_scale, search_step, features, labels, clip_weights, cache_keys, cache_values):
    """The accuracy of every step of the official loop, with its loop invariants hoisted.

    Each step of ``official_search_hp`` computes ``features @ cache_keys`` and ``100. * features @ clip_weights``
    from the same inputs (the same values every time), and ``cache_logits`` from them and beta only: here they
    are computed once (per beta for the cache logits) with exactly the same ops, so every accuracy is the one
    the loop computes. Returns {(beta index, alpha index): acc}.
    """
    beta_list, alpha_list = official_lists(search_scale, search_step)
    accs = {}
    affinity = features @ cache_keys
    clip_logits = 100. * features @ clip_weights
    for bi, beta in enumerate(beta_list):
        cache_logits = ((-1) * (beta - beta * affinity)).exp() @ cache_values
        for ai, alpha in enumerate(alpha_list):
            accs[bi, ai] = official_cls_acc(clip_logits + cache_logits * alpha, labels)
    return accs


def official_choice(accs, search_scale, search_step):
    """The official loop's choice from its step accuracies: beta outer, alpha inner, strict ``>`` from 0."""
    beta_list, alpha_list = official_lists(search_scale, search_step)
    best_acc, best_beta, best_alpha = 0, 0, 0
    for bi, beta in enumerate(beta_list):
        for ai, alpha in enumerate(alpha_list):
            if accs[bi, ai] > best_acc:
                best_acc, best_beta, best_alpha = accs[bi, ai], beta, alpha
    return best_beta, best_alpha, best_acc


# ---------------------------------------------------------------------------------------------------------
# the previous design of tip_search_correct_counts, and its floor
# ---------------------------------------------------------------------------------------------------------
@torch.no_grad()
def _previous_correct_counts(features, labels, clip_weights, cache_keys, cache_labels, beta_grid, alpha_grid,
                             max_chunk_bytes=1 << 28):
    """The previous ``tip_search_correct_counts``: per chunk of queries, the affinity and CLIP logits once;
    per beta, one exp pass over the [chunk, N] affinity and one class_sum; all alphas scored at once by argmax
    over the dense [A, chunk, C] logits."""
    m, n, c = features.shape[0], cache_keys.shape[0], clip_weights.shape[0]
    betas = [float(b) for b in beta_grid]
    alphas = torch.tensor([float(a) for a in alpha_grid], dtype=features.dtype, device=features.device)
    counts = torch.zeros(len(betas), len(alphas), dtype=torch.long, device=features.device)
    row_bytes = features.element_size() * (2 * n + (2 + 2 * len(alphas)) * c) + 1
    chunk = max(1, min(m, int(max_chunk_bytes // row_bytes)))
    for start in range(0, m, chunk):
        f = features[start:start + chunk]
        y = labels[start:start + chunk].view(1, -1)
        clip = tf.LOGIT_SCALE * f @ clip_weights.t()
        shifted = f @ cache_keys.t() - 1.
        buf = torch.empty_like(shifted)
        for i, beta in enumerate(betas):
            cache = tf.class_sum(torch.mul(shifted, beta, out=buf).exp_(), cache_labels, c)
            scores = clip + alphas.view(-1, 1, 1) * cache  # [A, m, C]
            counts[i] += (scores.argmax(dim=-1) == y).sum(dim=1)
    return counts


def _previous_search(features, labels, clip_weights, cache_keys, cache_labels, beta_grid, alpha_grid):
    """``search_tip_hparams`` on top of the previous counts (same selection rule)."""
    counts = _previous_correct_counts(features, labels, clip_weights, cache_keys, cache_labels, beta_grid,
                                      alpha_grid)
    i, j = divmod(int(counts.flatten().argmax()), len(alpha_grid))
    return float(beta_grid[i]), float(alpha_grid[j]), 100. * counts[i, j].item() / features.shape[0], counts


@torch.no_grad()
def _previous_floor(features, clip_weights, cache_keys, beta_grid, max_chunk_bytes=1 << 28):
    """What the previous design cannot go below: the two matmuls and one exp pass over the [M, N] affinity
    per beta (same chunks and buffers), nothing else."""
    m, n, c = features.shape[0], cache_keys.shape[0], clip_weights.shape[0]
    row_bytes = features.element_size() * (2 * n + 42 * c) + 1
    chunk = max(1, min(m, int(max_chunk_bytes // row_bytes)))
    for start in range(0, m, chunk):
        f = features[start:start + chunk]
        tf.LOGIT_SCALE * f @ clip_weights.t()
        shifted = f @ cache_keys.t() - 1.
        buf = torch.empty_like(shifted)
        for beta in beta_grid:
            torch.mul(shifted, float(beta), out=buf).exp_()


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
    m, c, k, d = args._memory_shape
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
    beta_grid = beta_grid[:12]  # two anchors and the betas between them; the peak does not depend on the rest

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
    cmd = [sys.executable, os.path.abspath(__file__), '--_memory-child', '50000', '1000', '16', str(args.dim),
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


def timed(fn, repeats):
    """(last result, median seconds, all times) of ``repeats`` runs after one warm-up run (the warm-up is
    skipped for runs longer than 5 s, which are then timed once)."""
    t0 = time.perf_counter()
    result = fn()
    first = time.perf_counter() - t0
    if first > 5 or repeats < 1:
        return result, first, [first]
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return result, sorted(times)[len(times) // 2], times


def bench_size(m, c, k, args, label):
    d = args.dim
    n = c * k
    steps = args.search_step[0] * args.search_step[1]
    print(f'{label}) M={m} queries, C={c} classes, K={k} shots (N={n} cache entries), D={d}, seed={args.seed}; '
          f'grid scale={args.search_scale} steps={args.search_step} ({steps} pairs)')
    features, labels, clip_weights, cache_keys, cache_labels = make_data(m, c, k, d, args.seed)
    beta_grid, alpha_grid = tf.tip_search_grids(args.search_scale, args.search_step)
    zero_shot = tf.topk_accuracy(100. * features @ clip_weights.t(), labels)

    # ours: one warm-up, then the median of --repeats runs
    ours, t_ours, times_ours = timed(lambda: tf.search_tip_hparams(
        features, labels, clip_weights, cache_keys, cache_labels, beta_grid, alpha_grid), args.repeats)
    counts = tf.tip_search_correct_counts(features, labels, clip_weights, cache_keys, cache_labels,
                                          beta_grid, alpha_grid)
    # the previous design and its floor
    prev_out, t_prev, times_prev = timed(lambda: _previous_search(
        features, labels, clip_weights, cache_keys, cache_labels, beta_grid, alpha_grid), args.repeats)
    previous, prev_counts = prev_out[:3], prev_out[3]
    _, t_floor, times_floor = timed(lambda: _previous_floor(features, clip_weights, cache_keys, beta_grid),
                                    args.repeats)

    # official: the layouts of the official code. Time the first beta's steps, then the whole loop if it fits
    # in the budget, else scale and take the choice from the hoisted loop.
    clip_weights_dc = clip_weights.t().contiguous()
    cache_keys_dn = cache_keys.t().contiguous()
    cache_values = F.one_hot(cache_labels, c).float()
    loop_accs = {}
    t0 = time.perf_counter()
    official_search_hp(args.search_scale, args.search_step, features, labels, clip_weights_dc, cache_keys_dn,
                       cache_values, num_betas=1, accs=loop_accs)
    t_first = time.perf_counter() - t0
    n_beta = args.search_step[0]
    if t_first * n_beta <= args.official_budget:
        loop_accs = {}
        t0 = time.perf_counter()
        official = official_search_hp(args.search_scale, args.search_step, features, labels, clip_weights_dc,
                                      cache_keys_dn, cache_values, accs=loop_accs)
        t_official = time.perf_counter() - t0
        timed_betas = n_beta
        hoisted_ok = None
    else:
        timed_betas = max(1, min(n_beta, int(args.official_budget / max(t_first, 1e-9))))
        if timed_betas > 1:
            loop_accs = {}
            t0 = time.perf_counter()
            official_search_hp(args.search_scale, args.search_step, features, labels, clip_weights_dc,
                               cache_keys_dn, cache_values, num_betas=timed_betas, accs=loop_accs)
            t_first = time.perf_counter() - t0
        t_official = t_first * n_beta / timed_betas
        t0 = time.perf_counter()
        hoisted = official_hoisted_accs(args.search_scale, args.search_step, features, labels, clip_weights_dc,
                                        cache_keys_dn, cache_values)
        t_hoisted = time.perf_counter() - t0
        hoisted_ok = all(hoisted[key] == acc for key, acc in loop_accs.items())
        assert hoisted_ok, 'the hoisted official loop disagrees with the official loop on the timed betas'
        official = official_choice(hoisted, args.search_scale, args.search_step)

    def same(result):
        return (result[0], result[1], result[2]) == (official[0], official[1], official[2])

    agree, prev_agree = same(ours), same(previous)
    counts_equal = torch.equal(counts, prev_counts)
    acc_grid = 100. * counts.double() / m
    print(f'   zero-shot accuracy {zero_shot:.2f}%; over the grid accuracy ranges '
          f'{acc_grid.min():.2f}% .. {acc_grid.max():.2f}% '
          f'({int((counts == counts.max()).sum())} pair(s) reach the best)')
    if timed_betas == n_beta:
        how = f'all {steps} steps timed'
    else:
        how = (f'{timed_betas * args.search_step[1]} steps timed ({timed_betas} beta(s) x all alphas), x{n_beta / timed_betas:g}; '
               f'choice from the hoisted loop ({t_hoisted:.0f} s), equal accuracies on the timed steps: {hoisted_ok}')
    print(f'   {"method":<44}{"beta":>9}{"alpha":>9}{"acc %":>8}{"time s":>11}{"official/x":>12}{"x/new":>9}')
    rows = [
        ('official loop (re-implemented)', official, t_official),
        ('previous design (exp pass every beta)', previous, t_prev),
        ('floor of the previous design', None, t_floor),
        ('new (search_tip_hparams)', ours, t_ours),
    ]
    for name, res, t in rows:
        cols = (f'{res[0]:>9.4f}{res[1]:>9.4f}{res[2]:>8.2f}' if res is not None else f'{"-":>9}{"-":>9}{"-":>8}')
        print(f'   {name:<44}{cols}{t:>11.3f}{t_official / t:>11.1f}x{t / t_ours:>8.1f}x')
    print(f'   official: {how}; {1e3 * t_official / steps:.1f} ms per step')
    print(f'   floor = the 2 matmuls + {n_beta} exp passes over the [M, N] affinity (median of '
          f'{len(times_floor)}); new: median of {len(times_ours)} (' + ', '.join(f'{t:.3f}' for t in times_ours) + ')')
    print(f'   same (beta, alpha, acc) as the official loop: new {agree}, previous {prev_agree}; '
          f'new counts == previous counts: {counts_equal}')
    print(f'   new vs official {t_official / t_ours:.0f}x, new vs previous {t_prev / t_ours:.1f}x, '
          f'new vs floor {t_floor / t_ours:.2f}x (floor/new)')
    assert agree, f'new search chose {ours}, the official loop {official}'
    assert prev_agree, f'previous design chose {previous}, the official loop {official}'
    return dict(shape=(m, c, k, n, d), official=official, ours=ours, previous=previous, t_official=t_official,
                t_ours=t_ours, t_prev=t_prev, t_floor=t_floor, agree=agree, prev_agree=prev_agree,
                counts_equal=counts_equal, timed_betas=timed_betas)


def parse_size(text):
    try:
        m, c, k = (int(v) for v in text.lower().split('x'))
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected MxCxK (e.g. 1000x1000x16), got {text!r}')
    return m, c, k


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--sizes', type=parse_size, nargs='+', default=[(200, 100, 16), (1000, 1000, 16)],
                        metavar='MxCxK', help='queries x classes x shots (default: 200x100x16 1000x1000x16)')
    parser.add_argument('--dim', type=int, default=1024, help='D (1024 = RN50)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--search-scale', type=float, nargs=2, default=[7., 3.], metavar=('BETA', 'ALPHA'))
    parser.add_argument('--search-step', type=int, nargs=2, default=[200, 20], metavar=('BETA', 'ALPHA'))
    parser.add_argument('--threads', type=int, default=1, help='torch threads for every method (default 1)')
    parser.add_argument('--repeats', type=int, default=3, help='timed runs of the fast methods (median reported)')
    parser.add_argument('--official-budget', type=float, default=20.,
                        help='seconds: time the whole official loop if it fits, else a subset of betas, scaled')
    parser.add_argument('--skip-memory', action='store_true', help='skip the ImageNet-shape memory run')
    parser.add_argument('--_memory-child', type=int, nargs=4, dest='_memory_shape', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._memory_shape:
        memory_child(args)
        return

    torch.set_num_threads(args.threads)
    print(f'torch {torch.__version__}, {torch.get_num_threads()} thread(s), {os.cpu_count()} CPU(s), float32')
    results = [bench_size(m, c, k, args, str(i + 1)) for i, (m, c, k) in enumerate(args.sizes)]

    mem = None
    if not args.skip_memory:
        label = len(args.sizes) + 1
        print(f'{label}) peak memory of our search at ImageNet shape (M=50000, C=1000, K=16 -> N=16000, '
              f'D={args.dim}), child process, float32, {args.threads} thread(s)')
        mem = run_memory_measurement(args)
        peak_kb = mem['hwm_after_kb'] - mem['rss_base_kb']
        ru_kb = mem['ru_after_kb'] - mem['ru_before_kb']
        print(f'   reduced beta grid: the first {len(mem["betas"])} beta values '
              f'({mem["betas"][0]:.4f} .. {mem["betas"][-1]:.4f}) x {mem["n_alpha"]} alpha values '
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
    print(f'  {"item":<58}{"value":>32}')
    rows = [('grid pairs', f'{args.search_step[0] * args.search_step[1]}')]
    for r in results:
        m, c, k, n, d = r['shape']
        tag = f'[M={m} C={c} N={n}]'
        rows += [
            (f'{tag} new: beta, alpha, acc %', f'{r["ours"][0]:.4f}, {r["ours"][1]:.4f}, {r["ours"][2]:.2f}'),
            (f'{tag} official: beta, alpha, acc %',
             f'{r["official"][0]:.4f}, {r["official"][1]:.4f}, {r["official"][2]:.2f}'),
            (f'{tag} same choice (new, previous)', f'{r["agree"]}, {r["prev_agree"]}'),
            (f'{tag} official / previous / floor / new (s)',
             f'{r["t_official"]:.1f} / {r["t_prev"]:.2f} / {r["t_floor"]:.2f} / {r["t_ours"]:.3f}'),
            (f'{tag} speed-up official / new', f'{r["t_official"] / r["t_ours"]:.0f}x'),
            (f'{tag} speed-up previous / new, floor / new',
             f'{r["t_prev"] / r["t_ours"]:.1f}x, {r["t_floor"] / r["t_ours"]:.2f}x'),
        ]
    if mem is not None:
        rows += [
            ('ImageNet shape: our peak RSS growth (GiB, 12 betas)',
             f'{(mem["hwm_after_kb"] - mem["rss_base_kb"]) / 2 ** 20:.3f}'),
            ('ImageNet shape: dense [M, N] affinity alone (GiB, fp32)', f'{gib(50000 * 16000 * 4):.2f}'),
        ]
    for name, value in rows:
        print(f'  {name:<58}{value:>32}')


if __name__ == '__main__':
    main()
