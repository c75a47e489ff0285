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
  alpha), kept below under a private name for this side-by-side only; at M = 50,000 it is skipped (with a note
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
import sys
import time
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
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


def _class_members(cache_labels: torch.Tensor, num_classes: int) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """The cache entries of each class: a [C, K_max] table of indices into the cache and its validity mask.

    The mask is None when the cache is grouped by class (K entries per class, in label order): the table is
    then ``arange(N).view(C, K)``. Otherwise each row lists the class's entries in cache order, padded with
    index 0 (masked out).
    """
    n, device = cache_labels.numel(), cache_labels.device
    k = tf._shots_if_grouped(cache_labels, num_classes)
    if k is not None:
        return torch.arange(n, device=device).view(num_classes, k), None
    per_class = torch.bincount(cache_labels, minlength=num_classes)
    k_max = int(per_class.max()) if n else 0
    order = torch.argsort(cache_labels, stable=True)
    sorted_labels = cache_labels[order]
    slot = torch.arange(n, device=device) - (torch.cumsum(per_class, 0) - per_class)[sorted_labels]
    members = torch.zeros(num_classes, k_max, dtype=torch.long, device=device)
    members[sorted_labels, slot] = order
    valid = torch.zeros(num_classes, k_max, dtype=torch.bool, device=device)
    valid[sorted_labels, slot] = True
    return members, valid


def _candidate_thresholds(clip: torch.Tensor, clip_y: torch.Tensor, labels: torch.Tensor,
                          shifted: torch.Tensor, k_max: int, betas: Sequence[float], alpha_lo: float,
                          alpha_hi: float) -> torch.Tensor:
    """Per (query, class) threshold T such that class c can reach the true class y's logit for some alpha of
    the grid only if ``cache_c - cache_y >= T`` (for an upper bound of cache_c; shape [M, C]).

    With ``d = clip_c - clip_y`` the logit gap ``d + alpha (cache_c - cache_y)`` is linear in alpha, so it is
    below ``-tau`` on all of ``[alpha_lo, alpha_hi]`` (``alpha_lo >= 0``) iff it is at both ends:
    ``T = -(d + tau) / alpha_hi`` where ``d + tau < 0``, and ``-(d + tau) / alpha_lo`` elsewhere. ``tau`` is a
    per-query safety margin, orders of magnitude above the rounding error of the logits and of the bound, so a
    pruned class is strictly below y in floating point as well. The true class gets +big (never a candidate);
    with a negative alpha in the grid nothing is pruned (-big everywhere else).
    """
    dtype = clip.dtype
    big = torch.finfo(dtype).max / 4
    rows = torch.arange(clip.shape[0], device=clip.device)
    if alpha_lo < 0:
        thresholds = torch.full_like(clip, -big)
    else:
        b_lo, b_hi = min(betas), max(betas)
        if shifted.shape[1]:
            s_lo, s_hi = shifted.amin(dim=1), shifted.amax(dim=1)
            # the largest beta * s over the grid and the cache: exp of it bounds every cache entry
            exponent = torch.maximum(torch.maximum(b_lo * s_lo, b_lo * s_hi), torch.maximum(b_hi * s_lo, b_hi * s_hi))
            cache_bound = k_max * exponent.exp()
            exponent_size = max(abs(b_lo), abs(b_hi)) * torch.maximum(s_lo.abs(), s_hi.abs())
        else:
            cache_bound = exponent_size = torch.zeros_like(clip_y)
        scale = clip.abs().amax(dim=1) + max(abs(alpha_lo), abs(alpha_hi)) * cache_bound
        tau = (16 * torch.finfo(dtype).eps) * (k_max + 16 + exponent_size) * scale + torch.finfo(dtype).tiny
        x = clip - clip_y[:, None] + tau[:, None]
        at_lo = x / -alpha_lo if alpha_lo > 0 else torch.full_like(x, -big)
        thresholds = torch.where(x < 0, x / -alpha_hi, at_lo).clamp_(-big, big)
    thresholds[rows, labels] = big
    return thresholds


def _count_chunk(f: torch.Tensor, y: torch.Tensor, clip_weights: torch.Tensor, cache_keys: torch.Tensor,
                 cache_labels: torch.Tensor, members: torch.Tensor, valid: Optional[torch.Tensor],
                 betas: Sequence[float], sorted_betas: Sequence[int], anchors: Sequence[int],
                 alphas: torch.Tensor, counts: torch.Tensor):
    """Add the correct counts of one chunk of queries to ``counts`` (see :func:`tip_search_correct_counts`)."""
    r, c = f.shape[0], clip_weights.shape[0]
    n, k_max, n_alpha = cache_keys.shape[0], members.shape[1], alphas.numel()
    rows = torch.arange(r, device=f.device)
    clip = tf.LOGIT_SCALE * f @ clip_weights.t()
    clip_y = clip[rows, y]
    shifted = (f @ cache_keys.t()).sub_(1.)  # exp(beta * (A - 1)) is bitwise exp(-beta * (1 - A))
    alpha_lo, alpha_hi = float(alphas.min()), float(alphas.max())
    thresholds = _candidate_thresholds(clip, clip_y, y, shifted, k_max, betas, alpha_lo, alpha_hi)
    buf = torch.empty_like(shifted)
    if valid is None:
        by_pair = shifted.view(r * c, k_max)  # the entries of (query, class) pairs, one row per pair
        y_values, y_pad = by_pair[rows * c + y], None
    else:
        y_values, y_pad = shifted[rows[:, None], members[y]], ~valid[y]
    one_group = torch.zeros(k_max, dtype=torch.long, device=f.device)
    # candidate pairs are processed in batches whose temporaries stay within the chunk's budget
    pair_batch = max(1, (r * (n + 2 * n_alpha * c)) // (k_max + 4 * n_alpha + 4))

    def exp_entries(values, beta, pad):
        """exp(beta * values), in place (``values`` is a fresh gather), padding entries set to 0."""
        e = values.mul_(beta).exp_()
        return e if pad is None else e.masked_fill_(pad, 0.)

    def beaten(cache_y, qi, pair, pair_cache, wrong):
        """Mark in ``wrong`` [r, A] (int32, > 0 = wrong) the (query, alpha) where a class (query qi, flat index
        ``pair = qi * C + class``, cache term ``pair_cache``) beats y: a higher logit, or an equal one at a
        lower class index (argmax and topk keep the first maximum)."""
        logits_y = clip_y[:, None] + alphas * cache_y[:, None]  # same ops as clip + alpha * cache: [r, A]
        # a class below y beats it from an equal logit on (>=, i.e. > the next float down), a class above y
        # needs a higher one (>): rows [0, r) of `bars` for the classes above y, rows [r, 2r) for those below
        bars = torch.cat([logits_y, torch.nextafter(logits_y, logits_y.new_tensor(-math.inf))])
        for s in range(0, qi.numel(), pair_batch):
            q, p = qi[s:s + pair_batch], pair[s:s + pair_batch]
            logits_c = clip.view(-1).index_select(0, p)[:, None] + alphas * pair_cache[s:s + pair_batch, None]
            below = p - q * c < y.index_select(0, q)
            beats = logits_c > bars.index_select(0, q + r * below.long())
            wrong.index_put_((q,), beats.to(torch.int32), accumulate=True)
        return wrong

    def champions(cache, cache_y):
        """Per query, the class whose worse logit gap to y over the alpha range is the largest (the likeliest
        to beat y at every alpha), from the exact cache terms of an anchor: flat indices [r]."""
        gap_y = cache - cache_y[:, None]
        d_clip = clip - clip_y[:, None]
        worst = torch.minimum(torch.add(d_clip, gap_y, alpha=alpha_lo), d_clip.add_(gap_y, alpha=alpha_hi))
        worst[rows, y] = -math.inf
        return rows * c + worst.argmax(dim=1)

    def anchor(i):
        """Cache term of every class at beta i (one exp pass over the chunk's affinities), scored; returns
        ``cache - thresholds`` for the chord bounds of the betas around it, and the champions."""
        cache = tf.class_sum(torch.mul(shifted, betas[i], out=buf).exp_(), cache_labels, c)
        cache_y = cache[rows, y]
        champ = champions(cache, cache_y) if c > 1 else rows[:0]
        # queries that the champion beats at every alpha are wrong: their other candidates are not scored
        wrong = beaten(cache_y, rows[:champ.numel()], champ, cache.view(-1).index_select(0, champ),
                       torch.zeros(r, n_alpha, dtype=torch.int32, device=f.device))
        gap = cache - thresholds
        candidates = (gap >= cache_y[:, None]).masked_fill_(wrong.bool().all(dim=1)[:, None], False)
        qi, ci = candidates.nonzero(as_tuple=True)
        pair = qi * c + ci
        beaten(cache_y, qi, pair, cache.view(-1).index_select(0, pair), wrong)
        counts[i] += r - (wrong > 0).sum(dim=0)
        return gap, champ

    def exact_pairs(beta, qi, pair):
        """Cache term of the given (query, class) pairs at ``beta``: exp over their entries only."""
        out = torch.empty(qi.numel(), dtype=f.dtype, device=f.device)
        for s in range(0, qi.numel(), pair_batch):
            q, p = qi[s:s + pair_batch], pair[s:s + pair_batch]
            if valid is None:
                values, pad = by_pair.index_select(0, p), None
            else:
                k = p - q * c
                values, pad = shifted[q[:, None], members[k]], ~valid[k]
            # the same reduction as class_sum's (a sum over the last dimension), one row per pair
            torch.sum(exp_entries(values, beta, pad), dim=-1, out=out[s:s + pair_batch])
        return out

    def between(block, gap_a, gap_b, champ):
        """The betas strictly between two anchors, ``block`` = [(beta index, fraction t of the way from the
        lower anchor to the upper one)], scored from the exact cache terms of y, of the anchors' champions
        ``champ`` and of the candidates only."""
        cache_y = torch.stack([tf.class_sum(exp_entries(y_values.clone(), betas[i], y_pad), one_group, 1)[:, 0]
                               for i, _ in block])  # [len(block), r]
        ts = [t for _, t in block]
        # cache_c(beta) is convex in beta, so below the chord of its anchor values: c is a candidate at t iff
        # lerp(gap_a, gap_b, t) >= cache_y(t). For the whole block, a superset: with line(t) a line below
        # cache_y(t) at every t of the block (the secant of two middle points, lowered if needed), the chord
        # minus line(t) is linear in t, so it is >= 0 somewhere in the block only if it is at an end.
        lo = (len(ts) - 1) // 2
        hi = min(lo + 1, len(ts) - 1)
        slope = ((cache_y[hi] - cache_y[lo]) / (ts[hi] - ts[lo]) if ts[hi] > ts[lo]
                 else torch.zeros_like(cache_y[0]))
        line = cache_y[lo] - slope * ts[lo]
        t_col = torch.tensor(ts, dtype=f.dtype, device=f.device)[:, None]
        line -= (line + slope * t_col - cache_y).clamp_(min=0).amax(dim=0)
        mask = None
        for t in {ts[0], ts[-1]}:
            at_t = torch.lerp(gap_a, gap_b, t) >= (line + slope * t)[:, None]
            mask = at_t if mask is None else mask.logical_or_(at_t)
        qs, cs = mask.nonzero(as_tuple=True)
        pairs = qs * c + cs
        gap_qa, gap_qb = gap_a.view(-1).index_select(0, pairs), gap_b.view(-1).index_select(0, pairs)
        champ_q = champ // c
        for j, (i, t) in enumerate(block):
            wrong = beaten(cache_y[j], champ_q, champ, exact_pairs(betas[i], champ_q, champ),
                           torch.zeros(r, n_alpha, dtype=torch.int32, device=f.device))
            open_q = ~wrong.bool().all(dim=1)
            keep = (torch.lerp(gap_qa, gap_qb, t) >= cache_y[j].index_select(0, qs)) & open_q.index_select(0, qs)
            sel = keep.nonzero().view(-1)
            qi, pair = qs.index_select(0, sel), pairs.index_select(0, sel)
            beaten(cache_y[j], qi, pair, exact_pairs(betas[i], qi, pair), wrong)
            counts[i] += r - (wrong > 0).sum(dim=0)

    gap_prev = champ_prev = prev = None
    for pos in anchors:
        gap, champ = anchor(sorted_betas[pos])
        if gap_prev is not None and pos > prev + 1:
            b0, b1 = betas[sorted_betas[prev]], betas[sorted_betas[pos]]
            between([(sorted_betas[p], (betas[sorted_betas[p]] - b0) / (b1 - b0) if b1 > b0 else 0.)
                     for p in range(prev + 1, pos)], gap_prev, gap, torch.cat([champ_prev, champ]))
        gap_prev, champ_prev, prev = gap, champ, pos


@torch.no_grad()
def _previous_correct_counts(features: torch.Tensor, labels: torch.Tensor, clip_weights: torch.Tensor,
                              cache_keys: torch.Tensor, cache_labels: torch.Tensor,
                              beta_grid: Sequence[float], alpha_grid: Sequence[float],
                              max_chunk_bytes: int = 1 << 28) -> torch.Tensor:
    """Number of correct top-1 predictions for every (beta, alpha) pair of the grids.

    Same counts as scoring the dense logits ``clip + alpha * cache_b`` of every pair (ties go to the lowest
    class index, as argmax and the official ``topk``), without materialising them:

    * per chunk of queries, the affinity and the CLIP logits are computed once;
    * for each beta, the logit gap of a class c to the true class y, ``d_c + alpha (cache_c - cache_y)``, is
      linear in alpha, so c can reach y for some alpha of the grid only if it does at the smallest or at the
      largest alpha. This gives a threshold per (query, class) on ``cache_c - cache_y``, with a safety margin
      far above rounding; the classes above it are the candidates, usually a few per query, and only they are
      scored, at every alpha, with the same float ops as the dense logits;
    * every ``_ANCHOR_SPACING``-th beta of the sorted grid (and the last) is an anchor: one exp pass over the
      [chunk, N] affinity and one :func:`class_sum` give the cache term of every class. Between two anchors the
      cache term of a class, a sum of exponentials, is convex in beta, hence below the chord of its anchor
      values: the candidates are the classes whose chord passes the threshold, and the exp is taken over the
      cache entries of y and of the candidates only (one :func:`class_sum` of y's entries per beta);
    * a query that one class (a "champion": the class with the largest worse-end logit gap at an anchor;
      between anchors, the champions of both) beats at every alpha is wrong at this beta: its other
      candidates are not scored. This keeps
      the work small where y is far from the top, e.g. at small beta, where the cache term barely matters.

    So one beta in ``_ANCHOR_SPACING`` costs an exp pass over the affinity, and no [A, M, C] logits are built.
    The cache terms that are scored are computed as in the dense computation (exp of ``beta * (A - 1)``,
    per-class sums with class_sum's reduction when the cache is grouped by class), so the counts are those of
    scoring the dense logits. Queries are processed in chunks so that the temporaries stay under about
    ``max_chunk_bytes`` (the same budget per query as the dense computation, which the pruned one needs less
    of).

    Returns:
        Tensor: int64 counts, shape [len(beta_grid), len(alpha_grid)].
    """
    m, n, c = features.shape[0], cache_keys.shape[0], clip_weights.shape[0]
    betas = [float(b) for b in beta_grid]
    alphas = torch.tensor([float(a) for a in alpha_grid], dtype=features.dtype, device=features.device)
    counts = torch.zeros(len(betas), len(alphas), dtype=torch.long, device=features.device)
    if not betas or not len(alphas):
        return counts
    # bytes per query row, the budget of the dense computation: shifted affinity + exp buffer ([N] each), clip
    # and cache logits ([C] each), and the [A, C] scores with their temporary
    row_bytes = features.element_size() * (2 * n + (2 + 2 * len(alphas)) * c) + 1
    chunk = max(1, min(m, int(max_chunk_bytes // row_bytes)))
    members, valid = _class_members(cache_labels, c)
    sorted_betas = sorted(range(len(betas)), key=betas.__getitem__)
    anchors = list(range(0, len(betas), _ANCHOR_SPACING))
    if anchors[-1] != len(betas) - 1:
        anchors.append(len(betas) - 1)
    for start in range(0, m, chunk):
        _count_chunk(features[start:start + chunk], labels[start:start + chunk], clip_weights, cache_keys,
                     cache_labels, members, valid, betas, sorted_betas, anchors, alphas, counts)
    return counts



# ---------------------------------------------------------------------------------------------------------
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
                prev_counts, t_prev = timed(lambda: _previous_correct_counts(f, y, w, keys, cl, beta_grid,
                                                                             alpha_grid))
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
