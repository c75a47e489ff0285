#!/usr/bin/env python
"""Benchmark of the Tip-Adapter (beta, alpha) grid search against its floor and the previous implementation.

For M = 4,000 and M = 50,000 queries (N = 16,000 cache entries: C = 1000 classes x K = 16 shots; D = 1024; the
default grid of ``tip_search_grids([7, 3])``: 200 betas x 20 alphas), on two kinds of random data:

* ordinary: features are normalised random class centres plus noise (classes separable, CLIP-like accuracies);
* crowded: what a randomly initialised CLIP gives: every image feature (queries and cache keys) is one common
  direction plus noise of scale 0.003, every text feature another direction plus 0.003-scale noise;

it prints, in one run and one process:

* search: ``tip_adapter_mm.functional.search_tip_hparams``;
* floor: what any exact search over the dense logits needs, timed alone: per chunk of queries (the search's
  chunks) the affinity matmul and the CLIP logits matmul, and per beta one exp pass over the [chunk, N]
  affinity (the official ``exp(-(beta - beta * A))``) and the class sum to [chunk, C];
* search / floor;
* previous: main's search before this change (the anchor / candidate design scoring every candidate at every
  alpha), ``tip_search_correct_counts`` of ``functional.py`` at :data:`PREVIOUS_COMMIT`, read from git; at M = 50,000 it is skipped (with a note
  and an estimate scaled from M = 4,000) when that estimate exceeds ``--previous-budget`` seconds;
* whether the counts of every (beta, alpha) pair are equal to the previous implementation's.

Usage::

    python benchmarks/bench_search.py [--quick] [--threads T] [--previous-budget SECONDS]

``--quick``: M = 400 and 2,000, C = 200, K = 16, D = 256 (about a minute). Float32 on the CPU; the peak RSS of
the process is printed at the end (the search's temporaries stay under ``max_chunk_bytes``, 256 MiB by default).
"""
import argparse
import math
import os
import resource
import subprocess
import sys
import time
import types

import torch
import torch.nn.functional as F

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from tip_adapter_mm import functional as tf  # noqa: E402


def ordinary_data(m, c, k, d, seed):
    """Normalised random class centres plus noise: classes are separable."""
    gen = torch.Generator().manual_seed(seed)
    centres = F.normalize(torch.randn(c, d, generator=gen), dim=-1)

    def around(lab, scale):
        return F.normalize(centres[lab] + scale * torch.randn(lab.numel(), d, generator=gen) / math.sqrt(d), dim=-1)

    labels = torch.randint(0, c, (m,), generator=gen)
    cache_labels = torch.arange(c).repeat_interleave(k)
    text = F.normalize(centres + 1.0 * torch.randn(c, d, generator=gen) / math.sqrt(d), dim=-1)
    return around(labels, 4.), labels, text, around(cache_labels, 4.), cache_labels


def crowded_data(m, c, k, d, seed, scale=0.003):
    """A common direction plus ``scale`` noise per coordinate (image features), another one for the text."""
    gen = torch.Generator().manual_seed(seed)
    image_dir, text_dir = F.normalize(torch.randn(2, d, generator=gen), dim=-1)

    def around(direction, n):
        out = torch.randn(n, d, generator=gen).mul_(scale).add_(direction)
        return F.normalize(out, dim=-1)

    labels = torch.randint(0, c, (m,), generator=gen)
    cache_labels = torch.arange(c).repeat_interleave(k)
    return around(image_dir, m), labels, around(text_dir, c), around(image_dir, c * k), cache_labels


@torch.no_grad()
def floor(features, clip_weights, cache_keys, cache_labels, beta_grid, max_chunk_bytes=1 << 28):
    """The matmuls, one exp pass per beta over the affinity and the class sum, in the search's chunks."""
    m, n, c = features.shape[0], cache_keys.shape[0], clip_weights.shape[0]
    row_bytes = features.element_size() * (2 * n + 42 * c) + 1
    chunk = max(1, min(m, int(max_chunk_bytes // row_bytes)))
    for start in range(0, m, chunk):
        f = features[start:start + chunk]
        tf.LOGIT_SCALE * f @ clip_weights.t()
        affinity = f @ cache_keys.t()
        buf = torch.empty_like(affinity)
        for beta in beta_grid:
            tf.class_sum(torch.mul(affinity, float(beta), out=buf).sub_(float(beta)).exp_(), cache_labels, c)


# ---------------------------------------------------------------------------------------------------------
# main's search before this change (tip_adapter_mm/functional.py at 4b32e0b), for the side-by-side only
# ---------------------------------------------------------------------------------------------------------
#: Spacing, in positions of the sorted beta grid, of the anchor betas at which
#: :func:`tip_search_correct_counts` computes the cache term of every class (the first and the last beta are
#: always anchors). Between two anchors the cache term of each class is bounded by the chord of its anchor
#: values (it is convex in beta), which is tight enough that only the few classes that can compete with the
#: true class are evaluated.
_ANCHOR_SPACING = 20


#: main's commit before this change: its ``tip_adapter_mm/functional.py`` holds the previous search
PREVIOUS_COMMIT = '4b32e0bf6faaa8592d89d71fe9c69c6596dc93ea'


def previous_functional():
    """``tip_adapter_mm/functional.py`` of :data:`PREVIOUS_COMMIT`, read from this checkout's git history (the
    project's own source; the functional core imports torch only), as a module."""
    try:
        source = subprocess.run(['git', '-C', REPO, 'show', f'{PREVIOUS_COMMIT}:tip_adapter_mm/functional.py'],
                                capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise SystemExit(f'the previous search is read from git commit {PREVIOUS_COMMIT} of this checkout: {e}')
    module = types.ModuleType('previous_functional')
    exec(compile(source, f'{PREVIOUS_COMMIT[:7]}:tip_adapter_mm/functional.py', 'exec'), module.__dict__)
    return module


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--quick', action='store_true', help='small shapes (M=400, 2000; C=200; D=256)')
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--previous-budget', type=float, default=600.,
                        help='seconds: skip the previous implementation at the larger M if its estimate exceeds this')
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    previous = previous_functional()
    sizes, c, k, d = ((400, 2000), 200, 16, 256) if args.quick else ((4000, 50000), 1000, 16, 1024)
    beta_grid, alpha_grid = tf.tip_search_grids([7, 3])
    print(f'torch {torch.__version__}, {torch.get_num_threads()} thread(s), float32; C={c}, K={k}, N={c * k}, '
          f'D={d}, grid {len(beta_grid)} betas x {len(alpha_grid)} alphas')
    header = (f'{"data":<10}{"M":>7}{"search s":>11}{"floor s":>10}{"search/floor":>14}{"previous s":>12}'
              f'{"prev/search":>13}{"same counts":>13}{"beta":>8}{"alpha":>8}{"acc %":>8}')
    rows, per_query_prev = [], {}
    for kind, make in (('ordinary', ordinary_data), ('crowded', crowded_data)):
        for m in sizes:
            f, y, w, keys, cl = make(m, c, k, d, args.seed)
            (beta, alpha, acc), t_search = timed(lambda: tf.search_tip_hparams(f, y, w, keys, cl, beta_grid,
                                                                               alpha_grid))
            _, t_floor = timed(lambda: floor(f, w, keys, cl, beta_grid))
            estimate = per_query_prev.get(kind, 0.) * m
            if kind in per_query_prev and estimate > args.previous_budget:
                t_prev, same = None, None
                note = f'previous skipped at M={m}: about {estimate:.0f} s, scaled from M={sizes[0]}'
            else:
                prev_counts, t_prev = timed(lambda: previous.tip_search_correct_counts(f, y, w, keys, cl,
                                                                                       beta_grid, alpha_grid))
                per_query_prev.setdefault(kind, t_prev / m)
                same = torch.equal(prev_counts, tf.tip_search_correct_counts(f, y, w, keys, cl, beta_grid,
                                                                             alpha_grid))
                note = None
            rows.append((kind, m, t_search, t_floor, t_prev, same, beta, alpha, acc, note))
            prev_txt = (f'{t_prev:>12.1f}{t_prev / t_search:>12.2f}x{str(same):>13}' if t_prev is not None
                        else f'{"skipped":>12}{"-":>13}{"-":>13}')
            print(header if len(rows) == 1 else '', end='\n' if len(rows) == 1 else '')
            print(f'{kind:<10}{m:>7}{t_search:>11.1f}{t_floor:>10.1f}{t_search / t_floor:>13.2f}x{prev_txt}'
                  f'{beta:>8.3f}{alpha:>8.3f}{acc:>8.2f}', flush=True)
            if note:
                print(f'  ({note})', flush=True)
    print(f'peak RSS of the process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20:.2f} GiB')


if __name__ == '__main__':
    main()
