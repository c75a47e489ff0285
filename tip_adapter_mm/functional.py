"""The math of the project as pure tensor functions.

Nothing in this module imports mmengine or mmpretrain: the registered heads, hooks and loops are thin
wrappers that call these functions, and the tests compare them against plain re-implementations of the
official code.

Conventions (shapes):
    features      [M, D]  L2-normalised image features (queries).
    clip_weights  [C, D]  L2-normalised text classifier, one row per class.
    cache_keys    [N, D]  cache keys (L2-normalised cache features, or trained keys).
    cache_labels  [N]     int64 class index of each cache entry.
"""
import math
from typing import Callable, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

Scalar = Union[float, torch.Tensor]

#: CLIP's logit scale, hard-coded to 100 in the official Tip-Adapter and Meta-Adapter code.
LOGIT_SCALE = 100.


def l2_normalize(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Divide ``x`` by its L2 norm along ``dim``."""
    return F.normalize(x, dim=dim)


def text_classifier(template_embeddings: torch.Tensor) -> torch.Tensor:
    """Class weights from raw text embeddings of every (class, template) pair.

    As in CLIP's prompt ensembling: each template embedding is normalised, the embeddings of a class are
    averaged over templates, and the mean is normalised again.

    Args:
        template_embeddings (Tensor): raw text features, shape [C, T, D].

    Returns:
        Tensor: class weights, shape [C, D], rows of unit norm.
    """
    if template_embeddings.dim() != 3:
        raise ValueError('template_embeddings must have shape [C, T, D], got '
                         f'{tuple(template_embeddings.shape)}')
    return l2_normalize(l2_normalize(template_embeddings).mean(dim=1))


def cache_keys_from_views(view_features: torch.Tensor) -> torch.Tensor:
    """Cache keys from the raw features of several augmented views of each image.

    The official code averages the *raw* (un-normalised) features over the views and normalises once.

    Args:
        view_features (Tensor): raw features, shape [V, N, D].

    Returns:
        Tensor: keys, shape [N, D], rows of unit norm.
    """
    if view_features.dim() != 3:
        raise ValueError(f'view_features must have shape [V, N, D], got {tuple(view_features.shape)}')
    return l2_normalize(view_features.float().mean(dim=0))


def _shots_if_grouped(labels: torch.Tensor, num_classes: int) -> Optional[int]:
    """K if ``labels`` is [0]*K + [1]*K + ... + [C-1]*K (the usual cache order), else None."""
    n = labels.numel()
    if num_classes == 0 or n % num_classes:
        return None
    k = n // num_classes
    expected = torch.arange(num_classes, device=labels.device).repeat_interleave(k)
    return k if torch.equal(labels, expected) else None


def class_sum(values: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Sum the columns of ``values`` per class: ``values @ one_hot(labels, num_classes)``.

    Uses a reshape-and-sum when the cache is grouped by class (K entries per class, in label order) and a
    scatter-add otherwise; never materialises the one-hot matrix.

    Args:
        values (Tensor): shape [M, N].
        labels (Tensor): int64 class indices, shape [N].
        num_classes (int): C.

    Returns:
        Tensor: shape [M, C].
    """
    k = _shots_if_grouped(labels, num_classes)
    if k is not None:
        return values.reshape(values.shape[0], num_classes, k).sum(dim=-1)
    out = values.new_zeros(values.shape[0], num_classes)
    return out.index_add(1, labels, values)


def cache_logits(affinity: torch.Tensor, cache_labels: torch.Tensor, num_classes: int,
                 beta: Scalar) -> torch.Tensor:
    """Tip-Adapter's cache term exp(-beta * (1 - affinity)) @ one_hot(cache_labels).

    Args:
        affinity (Tensor): cosine similarities of queries to cache keys, shape [M, N].
        cache_labels (Tensor): shape [N].
        num_classes (int): C.
        beta (float | Tensor): sharpness.

    Returns:
        Tensor: shape [M, C].
    """
    return class_sum(torch.exp(-(beta - beta * affinity)), cache_labels, num_classes)


def cache_weights_(affinity: torch.Tensor, beta: float, out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``exp(-beta (1 - affinity))`` in ``affinity``'s own memory, bitwise the official op order
    ``((-1) * (beta - beta * affinity)).exp()`` (``beta * A - beta`` is exactly ``-(beta - beta * A)``), as
    :func:`cache_logits` computes it out of place. The one [M, N] tensor of a Tip-Adapter forward pass.

    Args:
        affinity (Tensor): [M, N] cosine similarities, overwritten (autograd-safe: the matmul's backward needs
            its inputs, and ``exp_`` keeps its own result).
        beta (float): sharpness.
        out (Tensor, optional): write there instead (``affinity`` is then left as it is).
    """
    scaled = affinity.mul_(beta) if out is None else torch.mul(affinity, beta, out=out)
    return scaled.sub_(beta).exp_()


def tip_logits(features: torch.Tensor, clip_weights: torch.Tensor, cache_keys: torch.Tensor,
               cache_labels: torch.Tensor, alpha: Scalar, beta: Scalar,
               logit_scale: float = LOGIT_SCALE) -> torch.Tensor:
    """Tip-Adapter logits ``100 f Wᵀ + alpha exp(-beta (1 - f Kᵀ)) L``.

    With an empty cache (N = 0) or ``alpha = 0`` this is zero-shot CLIP.

    Args:
        features (Tensor): [M, D], L2-normalised.
        clip_weights (Tensor): [C, D].
        cache_keys (Tensor): [N, D].
        cache_labels (Tensor): [N] int64.
        alpha (float | Tensor): residual ratio (weight of the cache term).
        beta (float | Tensor): sharpness.
        logit_scale (float): scale of the CLIP term. Defaults to 100.

    Returns:
        Tensor: logits, shape [M, C].
    """
    logits = logit_scale * features @ clip_weights.t()
    if cache_keys.shape[0] == 0:
        return logits
    affinity = features @ cache_keys.t()
    if torch.is_tensor(beta) and beta.requires_grad:  # a gradient for beta needs the affinity kept
        return logits + alpha * cache_logits(affinity, cache_labels, clip_weights.shape[0], beta)
    return logits + alpha * class_sum(cache_weights_(affinity, beta), cache_labels, clip_weights.shape[0])


def search_grid(scale: float, steps: int) -> list:
    """The official search grid: ``steps`` values from 0.1 to ``scale``, endpoint excluded.

    ``[i * (scale - 0.1) / steps + 0.1 for i in range(steps)]``, computed in Python floats as the official
    code does.
    """
    if steps < 1:
        raise ValueError(f'search step must be >= 1, got {steps}')
    return [i * (scale - 0.1) / steps + 0.1 for i in range(int(steps))]


def tip_search_grids(search_scale: Sequence[float],
                     search_step: Sequence[int] = (200, 20)) -> Tuple[list, list]:
    """(beta_grid, alpha_grid) from the official ``search_scale`` [β, α] and ``search_step`` [β, α]."""
    if len(search_scale) != 2 or len(search_step) != 2:
        raise ValueError('search_scale and search_step must be [beta, alpha] pairs, got '
                         f'{list(search_scale)} and {list(search_step)}')
    return search_grid(search_scale[0], search_step[0]), search_grid(search_scale[1], search_step[1])


def topk_accuracy(logits: torch.Tensor, labels: torch.Tensor, topk: int = 1) -> float:
    """Percentage of rows whose label is among the ``topk`` highest logits."""
    if labels.numel() == 0:
        raise ValueError('cannot compute accuracy on an empty set')
    pred = logits.topk(min(topk, logits.shape[1]), dim=1).indices
    return 100. * (pred == labels.view(-1, 1)).any(dim=1).sum().item() / labels.numel()


#: Spacing, in positions of the sorted beta grid, of the anchor betas at which
#: :func:`tip_search_correct_counts` computes the cache term of every class (the first and the last beta are
#: always anchors). Between two anchors the cache term of each class is bounded by the chord of its anchor
#: values (it is convex in beta), which is tight enough that only the few classes that can compete with the
#: true class are evaluated.
_ANCHOR_SPACING = 20

#: Above this fraction of candidate (query, class) pairs at a beta, :func:`tip_search_correct_counts` scores every
#: class of the chunk from dense [chunk, C] passes (one exp pass over the affinity, the alpha interval of every
#: class) instead of gathering the candidates: crowded features, e.g. those of a randomly initialised CLIP,
#: leave most classes in reach of the true one.
_DENSE_FRACTION = 0.25


def _class_members(cache_labels: torch.Tensor, num_classes: int) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """The cache entries of each class: a [C, K_max] table of indices into the cache and its validity mask.

    The mask is None when the cache is grouped by class (K entries per class, in label order): the table is
    then ``arange(N).view(C, K)``. Otherwise each row lists the class's entries in cache order, padded with
    index 0 (masked out).
    """
    n, device = cache_labels.numel(), cache_labels.device
    k = _shots_if_grouped(cache_labels, num_classes)
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
                          affinity: torch.Tensor, k_max: int, betas: Sequence[float], alpha_lo: float,
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
        if affinity.shape[1]:
            s_lo, s_hi = affinity.amin(dim=1) - 1., affinity.amax(dim=1) - 1.  # of A - 1, the exponent / beta
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
                 alphas: torch.Tensor, counts: torch.Tensor, step: Callable[[], None]):
    """Add the correct counts of one chunk of queries to ``counts`` (see :func:`tip_search_correct_counts`);
    ``step()`` is called after each beta."""
    r, c = f.shape[0], clip_weights.shape[0]
    n, k_max, n_alpha = cache_keys.shape[0], members.shape[1], alphas.numel()
    rows = torch.arange(r, device=f.device)
    clip = LOGIT_SCALE * f @ clip_weights.t()
    clip_y = clip[rows, y]
    affinity = f @ cache_keys.t()
    alpha_lo, alpha_hi = float(alphas.min()), float(alphas.max())
    alpha_abs = max(abs(alpha_lo), abs(alpha_hi))
    unit, tiny = torch.finfo(f.dtype).eps / 2, torch.finfo(f.dtype).tiny  # unit roundoff of the logits
    wide = torch.float64
    clip_y_wide = clip_y.to(wide)
    clip_wide = clip.to(wide)
    is_y = torch.zeros(r, c, dtype=torch.bool, device=f.device)
    is_y[rows, y] = True  # y against itself, void in the dense marks
    dense_pairs = _DENSE_FRACTION * r * c
    thresholds = _candidate_thresholds(clip, clip_y, y, affinity, k_max, betas, alpha_lo, alpha_hi)
    buf = torch.empty_like(affinity)
    if valid is None:
        by_pair = affinity.view(r * c, k_max)  # the entries of (query, class) pairs, one row per pair
        y_values, y_pad = by_pair[rows * c + y], None
    else:
        y_values, y_pad = affinity[rows[:, None], members[y]], ~valid[y]
    one_group = torch.zeros(k_max, dtype=torch.long, device=f.device)
    # candidate pairs are processed in batches whose temporaries stay within the chunk's budget
    pair_batch = max(1, (r * (n + 2 * n_alpha * c)) // (k_max + 4 * n_alpha + 4))

    def exp_entries(values, beta, pad):
        """The official exp(-(beta - beta * values)), in place (``values`` is a fresh gather), padding entries
        set to 0."""
        e = cache_weights_(values, beta)
        return e if pad is None else e.masked_fill_(pad, 0.)

    def scored(cache_y, qi, pair, pair_cache, wrong):
        """Mark in ``wrong`` [r, A] (int32, > 0 = wrong) the (query, alpha) where a class (query qi, flat index
        ``pair = qi * C + class``, cache term ``pair_cache``) beats y, from the logits of every alpha computed
        as the dense ``clip + alpha * cache``: a higher logit, or an equal one at a lower class index (argmax's
        first maximum). O(pairs x A): :func:`beaten` calls it only for the few queries whose
        answer is within rounding of a grid alpha."""
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

    def marks(z_y, g_y, z_c, g_c, reduce, wrong, void=None):
        """Mark in ``wrong`` [r, A] the (query, alpha) that some class surely beats y at, from the alpha interval
        on which y wins; returns the queries [r] (bool) with a grid alpha within rounding of a bound or tied.

        The margin of y over a class c, ``m(alpha) = (clip_y - clip_c) + alpha (cache_y - cache_c)``, is linear
        in alpha, so the alphas where c surely beats y (``m < -E``) and those where it surely does not
        (``m > E``) are half-lines (all or nothing when the cache terms are equal); ``E`` bounds, with a
        factor 8 to spare, the rounding error of the float logits ``clip + alpha * cache`` and of the bounds
        themselves (computed in float64). Per query the max / min of these bounds over its classes
        (``reduce(values, 'amax' | 'amin')`` -> [r]) give the alphas where the query is surely wrong and where
        it is surely right. ``z_y, g_y`` broadcast against ``z_c, g_c`` (float64); entries where ``void`` is
        True (y itself, with equal cache terms) bound nothing.
        """
        a, b = z_y - z_c, g_y - g_c
        if void is not None:
            a.masked_fill_(void, math.inf)
        err = (16 * unit) * (z_y.abs() + z_c.abs() + 2 * alpha_abs * (g_y.abs() + g_c.abs())) + tiny
        up, down, flat = b > 0, b < 0, b == 0
        surely_beats, surely_not = (-err - a) / b, (err - a) / b  # alpha bounds (inf / nan where b == 0)
        inf = a.new_tensor(math.inf)
        # equal cache terms (b == 0): the CLIP logits decide at every alpha
        wrong_below = reduce(torch.where(up, surely_beats, torch.where(flat & (a < -err), inf, -inf)), 'amax')
        wrong_above = reduce(torch.where(down, surely_beats, inf), 'amin')  # wrong for alpha outside these
        right_above = reduce(torch.where(up, surely_not, torch.where(flat & (a <= err), inf, -inf)), 'amax')
        right_below = reduce(torch.where(down, surely_not, inf), 'amin')  # right for alpha strictly inside
        wide_alphas = alphas.to(wide)
        surely_wrong = (wide_alphas < wrong_below[:, None]) | (wide_alphas > wrong_above[:, None])
        surely_right = (wide_alphas > right_above[:, None]) & (wide_alphas < right_below[:, None])
        wrong += surely_wrong.to(torch.int32)
        return (surely_wrong | surely_right).logical_not_().any(dim=1)

    def beaten(cache_y, qi, pair, pair_cache, wrong):
        """Same marks as :func:`scored` in O(pairs + r x A), by :func:`marks`; a query with a grid alpha in
        neither its surely-wrong nor its surely-right set (a tie, or a near tie within rounding) has its
        logits scored exactly by :func:`scored`, so the marks are the dense logits' argmax, ties included."""

        def reduce(values, how):
            """Per query, the max or min of a bound over its classes (``values`` is +-inf where it is void)."""
            init = -math.inf if how == 'amax' else math.inf
            return torch.full((r,), init, dtype=wide, device=f.device).scatter_reduce_(0, qi, values, how)

        unsure = marks(clip_y.index_select(0, qi).to(wide), cache_y.index_select(0, qi).to(wide),
                       clip.view(-1).index_select(0, pair).to(wide), pair_cache.to(wide), reduce, wrong)
        if unsure.any():
            sel = unsure.index_select(0, qi).nonzero().view(-1)
            scored(cache_y, qi.index_select(0, sel), pair.index_select(0, sel), pair_cache.index_select(0, sel),
                   wrong)
        return wrong

    def dense(cache, cache_y):
        """The marks of :func:`beaten` over every class of every query, from the cache terms [r, C] of all
        classes: elementwise passes over [r, C] instead of gathers, for a beta where most (query, class) pairs
        are candidates (crowded features). Unsure queries are scored over all their classes."""
        wrong = torch.zeros(r, n_alpha, dtype=torch.int32, device=f.device)
        unsure = marks(clip_y_wide[:, None], cache_y.to(wide)[:, None], clip_wide, cache.to(wide),
                       lambda values, how: getattr(values, how)(dim=1), wrong, is_y)
        if unsure.any():
            q = unsure.nonzero().view(-1)
            pair = (q[:, None] * c + torch.arange(c, device=f.device)).view(-1)
            scored(cache_y, q.repeat_interleave(c), pair, cache.view(-1).index_select(0, pair), wrong)
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
        cache = class_sum(cache_weights_(affinity, betas[i], out=buf), cache_labels, c)
        cache_y = cache[rows, y]
        champ = champions(cache, cache_y) if c > 1 else rows[:0]
        # queries that the champion beats at every alpha are wrong: their other candidates are not scored
        wrong = beaten(cache_y, rows[:champ.numel()], champ, cache.view(-1).index_select(0, champ),
                       torch.zeros(r, n_alpha, dtype=torch.int32, device=f.device))
        gap = cache - thresholds
        candidates = (gap >= cache_y[:, None]).masked_fill_(wrong.bool().all(dim=1)[:, None], False)
        if candidates.count_nonzero() > dense_pairs:
            wrong = dense(cache, cache_y)
        else:
            qi, ci = candidates.nonzero(as_tuple=True)
            pair = qi * c + ci
            beaten(cache_y, qi, pair, cache.view(-1).index_select(0, pair), wrong)
        counts[i] += r - (wrong > 0).sum(dim=0)
        step()
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
                values, pad = affinity[q[:, None], members[k]], ~valid[k]
            # the same reduction as class_sum's (a sum over the last dimension), one row per pair
            torch.sum(exp_entries(values, beta, pad), dim=-1, out=out[s:s + pair_batch])
        return out

    def between(block, gap_a, gap_b, champ):
        """The betas strictly between two anchors, ``block`` = [(beta index, fraction t of the way from the
        lower anchor to the upper one)], scored from the exact cache terms of y, of the anchors' champions
        ``champ`` and of the candidates only."""
        cache_y = torch.stack([class_sum(exp_entries(y_values.clone(), betas[i], y_pad), one_group, 1)[:, 0]
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
            if keep.count_nonzero() > dense_pairs:  # crowded: one exp pass and the dense marks are cheaper
                cache = class_sum(cache_weights_(affinity, betas[i], out=buf), cache_labels, c)
                wrong = dense(cache, cache[rows, y])
            else:
                sel = keep.nonzero().view(-1)
                qi, pair = qs.index_select(0, sel), pairs.index_select(0, sel)
                beaten(cache_y[j], qi, pair, exact_pairs(betas[i], qi, pair), wrong)
            counts[i] += r - (wrong > 0).sum(dim=0)
            step()

    gap_prev = champ_prev = prev = None
    for pos in anchors:
        gap, champ = anchor(sorted_betas[pos])
        if gap_prev is not None and pos > prev + 1:
            b0, b1 = betas[sorted_betas[prev]], betas[sorted_betas[pos]]
            between([(sorted_betas[p], (betas[sorted_betas[p]] - b0) / (b1 - b0) if b1 > b0 else 0.)
                     for p in range(prev + 1, pos)], gap_prev, gap, torch.cat([champ_prev, champ]))
        gap_prev, champ_prev, prev = gap, champ, pos


@torch.no_grad()
def tip_search_correct_counts(features: torch.Tensor, labels: torch.Tensor, clip_weights: torch.Tensor,
                              cache_keys: torch.Tensor, cache_labels: torch.Tensor,
                              beta_grid: Sequence[float], alpha_grid: Sequence[float],
                              max_chunk_bytes: int = 1 << 28,
                              progress: Optional[Callable[[int], None]] = None) -> torch.Tensor:
    """Number of correct top-1 predictions for every (beta, alpha) pair of the grids.

    Same counts as scoring the dense logits ``clip + alpha * cache_b`` of every pair (ties go to the lowest
    class index: argmax's first maximum), without materialising them:

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
      the work small where y is far from the top, e.g. at small beta, where the cache term barely matters;
    * the candidates of a query are scored at all alphas at once from the alpha interval on which y beats
      them (linear margins); only queries with a grid alpha within rounding of a bound of that interval, or
      tied, are scored from their logits;
    * at a beta where more than ``_DENSE_FRACTION`` of the chunk's (query, class) pairs are candidates
      (crowded features), the cache term of every class comes from one exp pass and :func:`class_sum`, and
      the intervals of all classes from elementwise passes over [chunk, C].

    So one beta in ``_ANCHOR_SPACING`` costs an exp pass over the affinity, and no [A, M, C] logits are built.
    The cache terms that are scored are computed as in the dense computation (the official op order
    ``exp(-(beta - beta * A))``, which crowded features, with A near 1, are sensitive to;
    per-class sums with class_sum's reduction when the cache is grouped by class), so the counts are those of
    scoring the dense logits. Queries are processed in chunks so that the temporaries stay under about
    ``max_chunk_bytes`` (the same budget per query as the dense computation, which the pruned one needs less
    of).

    Args:
        features (Tensor): [M, D] normalised queries.
        labels (Tensor): [M] int64 labels.
        clip_weights (Tensor): [C, D].
        cache_keys (Tensor): [N, D].
        cache_labels (Tensor): [N].
        beta_grid (sequence of float): sharpness values.
        alpha_grid (sequence of float): residual ratios.
        max_chunk_bytes (int): bound on the temporaries of one chunk of queries.
        progress (callable, optional): called as ``progress(n)`` with the number of betas newly done (the
            calls add up to ``len(beta_grid)``; with several chunks of queries, a beta counts as done in
            proportion), e.g. a progress bar's update. Defaults to None.

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
    n_chunks = -(-m // chunk)
    steps = [0, 0]  # (beta, chunk) steps done, betas reported

    def step():
        steps[0] += 1
        done = steps[0] // n_chunks
        if progress is not None and done > steps[1]:
            progress(done - steps[1])
            steps[1] = done

    for start in range(0, m, chunk):
        _count_chunk(features[start:start + chunk], labels[start:start + chunk], clip_weights, cache_keys,
                     cache_labels, members, valid, betas, sorted_betas, anchors, alphas, counts, step)
    return counts


def search_tip_hparams(features: torch.Tensor, labels: torch.Tensor, clip_weights: torch.Tensor,
                       cache_keys: torch.Tensor, cache_labels: torch.Tensor,
                       beta_grid: Sequence[float], alpha_grid: Sequence[float],
                       max_chunk_bytes: int = 1 << 28,
                       progress: Optional[Callable[[int], None]] = None) -> Tuple[float, float, float]:
    """Grid-search (beta, alpha) for the best top-1 accuracy, with the official tie rule.

    The official loop runs beta outer and alpha inner, both ascending, and a pair replaces the best only if
    it is strictly better, so ties keep the earliest pair (smallest beta, then smallest alpha). This gives the
    same choice from the correct counts of every pair (:func:`tip_search_correct_counts`: one matmul, an exp
    pass over the affinity at one beta in ``_ANCHOR_SPACING``, and only the classes that can compete with the
    true class scored) instead of ``len(beta_grid) * len(alpha_grid)`` dense matmuls.

    Args:
        features (Tensor): [M, D] normalised validation features.
        labels (Tensor): [M] int64 labels.
        clip_weights (Tensor): [C, D].
        cache_keys (Tensor): [N, D].
        cache_labels (Tensor): [N].
        beta_grid (sequence of float): ascending sharpness values.
        alpha_grid (sequence of float): ascending residual ratios.
        max_chunk_bytes (int): bound on the temporaries of one chunk of queries.
        progress (callable, optional): called with the number of betas newly done (see
            :func:`tip_search_correct_counts`). Defaults to None.

    Returns:
        tuple: (beta, alpha, top1 in percent).
    """
    if features.shape[0] == 0:
        raise ValueError('the validation set is empty: nothing to search alpha and beta on')
    if len(beta_grid) == 0 or len(alpha_grid) == 0:
        raise ValueError('empty search grid')
    counts = tip_search_correct_counts(features, labels, clip_weights, cache_keys, cache_labels,
                                       beta_grid, alpha_grid, max_chunk_bytes, progress)
    best = int(counts.flatten().argmax())  # argmax returns the first maximum: beta-major, alpha-minor
    i, j = divmod(best, len(alpha_grid))
    return float(beta_grid[i]), float(alpha_grid[j]), 100. * counts[i, j].item() / features.shape[0]


def _check_meta_adapter_inputs(text_weights: torch.Tensor, support: torch.Tensor, q_weight: torch.Tensor,
                               k_weight: torch.Tensor, gate_weight: torch.Tensor, gate_bias: torch.Tensor,
                               num_heads: int):
    if text_weights.dim() != 2:
        raise ValueError(f'text_weights must have shape [C, D], got {tuple(text_weights.shape)}')
    c, d = text_weights.shape
    if support.dim() != 3:
        raise ValueError(f'support must have shape [C, K, D], got {tuple(support.shape)}')
    if support.shape[0] != c or support.shape[2] != d:
        raise ValueError(f'support of shape {tuple(support.shape)} does not fit text_weights of shape '
                         f'{tuple(text_weights.shape)}: expected [C, K, D] = [{c}, K, {d}] (one set of K support '
                         'features per class, same feature size)')
    for name, value, expected in (('q_weight', q_weight, (d, d)), ('k_weight', k_weight, (d, d)),
                                  ('gate_weight', gate_weight, (1, d)), ('gate_bias', gate_bias, (1,))):
        if tuple(value.shape) != expected:
            raise ValueError(f'{name} of shape {tuple(value.shape)} does not fit feature size D={d}: expected '
                             f'{expected}')
    if not isinstance(num_heads, int) or num_heads < 1 or d % num_heads:
        raise ValueError(f'num_heads must be a positive divisor of the feature size D={d}, got {num_heads!r}')


def meta_adapter_weights(text_weights: torch.Tensor, support: torch.Tensor, q_weight: torch.Tensor,
                         k_weight: torch.Tensor, gate_weight: torch.Tensor, gate_bias: torch.Tensor,
                         num_heads: int = 1) -> torch.Tensor:
    """Meta-Adapter's refined class weights (the forward of the official ``MetaAdapter`` module).

    Per class c, with tokens ``T_c = [w_c; F_c1 .. F_cK]`` (the text embedding is itself a key/value token):

        q = W_q w_c,   k_j = W_k T_cj,   a = softmax_j(q . k_j / sqrt(D)),   F̂_c = sum_j a_j T_cj,
        g_c = sigmoid(W_g w_c + b_g),   ŵ_c = normalize(w_c + g_c F̂_c).

    The values are the raw tokens (no value or output projection) and the gate is one scalar per class, as in
    ``ArsenalCheng/Meta-Adapter`` (``main.py``, ``MetaAdapter``; single head is the official default and the
    only setting the official code runs). Weights follow ``nn.Linear`` (``y = x @ W.T``).

    Computed for all classes at once, re-associated as ``q . (W_k t) = (W_kᵀ q) . t``: the projection costs
    2 C D² instead of C (K + 2) D², and the [C, K + 1, D] token tensor is never built. Mathematically the
    same as the official forward (float32 differences are at rounding level, ~1e-8).

    With ``num_heads = H > 1`` (not in the official code, whose reshapes only work with one head), q and k are
    split into H chunks of D / H, each head attends with scale sqrt(D / H) over the tokens split the same way,
    and the heads' outputs are concatenated; the gate stays one scalar per class.

    The classifier is then ``logits = 100 f ŵᵀ`` on normalised image features f
    (:func:`meta_adapter_logits`); no Tip-Adapter cache term is added.

    Args:
        text_weights (Tensor): w, L2-normalised text embeddings, shape [C, D].
        support (Tensor): F, K normalised support features per class, shape [C, K, D] (K may be 0).
        q_weight (Tensor): W_q, shape [D, D] (``q_proj.weight``).
        k_weight (Tensor): W_k, shape [D, D] (``k_proj.weight``).
        gate_weight (Tensor): W_g, shape [1, D] (``alpha_proj.weight``).
        gate_bias (Tensor): b_g, shape [1] (``alpha_proj.bias``).
        num_heads (int): attention heads. Defaults to 1 (official).

    Returns:
        Tensor: refined class weights ŵ, shape [C, D], rows of unit norm.
    """
    import math
    _check_meta_adapter_inputs(text_weights, support, q_weight, k_weight, gate_weight, gate_bias, num_heads)
    c, d = text_weights.shape
    k = support.shape[1]
    h, e = num_heads, d // num_heads
    q = (text_weights @ q_weight.t()).reshape(c, h, e)                   # W_q w, split into heads
    q_in = torch.einsum('che,hed->chd', q, k_weight.reshape(h, e, d))    # W_k^hᵀ q^h per head: [C, H, D]
    text_score = torch.einsum('chd,cd->ch', q_in, text_weights)[..., None]  # the text token: [C, H, 1]
    support_score = torch.einsum('chd,ckd->chk', q_in, support)          # the K supports: [C, H, K]
    attn = (torch.cat([text_score, support_score], dim=-1) / math.sqrt(e)).softmax(dim=-1)
    attended = attn[..., :1] * text_weights.reshape(c, h, e) \
        + torch.einsum('chk,ckhe->che', attn[..., 1:], support.reshape(c, k, h, e))
    gate = torch.sigmoid(text_weights @ gate_weight.t() + gate_bias)     # one scalar per class: [C, 1]
    return l2_normalize(text_weights + gate * attended.reshape(c, d))


def meta_adapter_logits(features: torch.Tensor, refined_weights: torch.Tensor,
                        logit_scale: float = LOGIT_SCALE) -> torch.Tensor:
    """Meta-Adapter logits ``100 f ŵᵀ`` (fixed scale, no cache term, as in the official code).

    Args:
        features (Tensor): [M, D], L2-normalised.
        refined_weights (Tensor): ŵ from :func:`meta_adapter_weights`, [C, D].
        logit_scale (float): Defaults to 100.

    Returns:
        Tensor: logits, shape [M, C].
    """
    return logit_scale * features @ refined_weights.t()


def rank_classes_by_zero_shot(features: torch.Tensor, labels: torch.Tensor,
                              clip_weights: torch.Tensor) -> Tuple[list, list]:
    """Classes ordered by zero-shot CLIP accuracy on their own (training) images, best first.

    The official Meta-Adapter protocol splits each dataset's classes into base (easy, about 70 %) and
    novel (hard) by zero-shot accuracy; computed here on the training supports only, never on test.

    Args:
        features (Tensor): normalised image features [N, D] (e.g. the cache keys).
        labels (Tensor): their labels [N].
        clip_weights (Tensor): the text classifier [C, D].

    Returns:
        tuple: (class indices sorted by accuracy, descending; ties in class order), (accuracy per class in
        percent, indexed by class; NaN for a class without images).
    """
    num_classes = clip_weights.shape[0]
    correct = ((features @ clip_weights.t()).argmax(dim=1) == labels).double()
    total = torch.zeros(num_classes, dtype=torch.double).index_add_(0, labels.cpu(), torch.ones_like(correct).cpu())
    hits = torch.zeros(num_classes, dtype=torch.double).index_add_(0, labels.cpu(), correct.cpu())
    accuracy = 100. * hits / total
    order = sorted(range(num_classes), key=lambda c: (-(accuracy[c].nan_to_num(-1.).item()), c))
    return order, accuracy.tolist()


def check_cache_labels(cache_labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Raise ``ValueError`` unless ``cache_labels`` are integer class indices in [0, num_classes); return the
    number of entries of each class, [num_classes]."""
    if cache_labels.dtype.is_floating_point or cache_labels.dtype == torch.bool:
        raise ValueError(f'cache labels must be integer class indices, got dtype {cache_labels.dtype}')
    if cache_labels.min() < 0 or cache_labels.max() >= num_classes:
        raise ValueError(f'cache labels must lie in [0, {num_classes}), got '
                         f'[{int(cache_labels.min())}, {int(cache_labels.max())}]')
    return torch.bincount(cache_labels.long(), minlength=num_classes)
