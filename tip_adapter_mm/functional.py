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
from typing import Optional, Sequence, Tuple, Union

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
    return class_sum(torch.exp(-beta * (1. - affinity)), cache_labels, num_classes)


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
    return logits + alpha * cache_logits(affinity, cache_labels, clip_weights.shape[0], beta)


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


@torch.no_grad()
def tip_search_correct_counts(features: torch.Tensor, labels: torch.Tensor, clip_weights: torch.Tensor,
                              cache_keys: torch.Tensor, cache_labels: torch.Tensor,
                              beta_grid: Sequence[float], alpha_grid: Sequence[float],
                              max_chunk_bytes: int = 1 << 28) -> torch.Tensor:
    """Number of correct top-1 predictions for every (beta, alpha) pair of the grids.

    The affinity and the CLIP logits are computed once per chunk of queries; per beta, one exp and one
    per-class sum; all alphas are scored at once. Queries are processed in chunks so that the temporaries
    stay under about ``max_chunk_bytes``.

    Returns:
        Tensor: int64 counts, shape [len(beta_grid), len(alpha_grid)].
    """
    m, n, c = features.shape[0], cache_keys.shape[0], clip_weights.shape[0]
    betas = [float(b) for b in beta_grid]
    alphas = torch.tensor([float(a) for a in alpha_grid], dtype=features.dtype, device=features.device)
    counts = torch.zeros(len(betas), len(alphas), dtype=torch.long, device=features.device)
    # bytes per query row: shifted affinity + exp buffer ([N] each), clip and cache logits ([C] each), and
    # the [A, C] scores with their temporary
    row_bytes = features.element_size() * (2 * n + (2 + 2 * len(alphas)) * c) + 1
    chunk = max(1, min(m, int(max_chunk_bytes // row_bytes)))
    for start in range(0, m, chunk):
        f = features[start:start + chunk]
        y = labels[start:start + chunk].view(1, -1)
        clip = LOGIT_SCALE * f @ clip_weights.t()
        shifted = f @ cache_keys.t() - 1.  # exp(beta * (A - 1)) is bitwise exp(-beta * (1 - A))
        buf = torch.empty_like(shifted)
        for i, beta in enumerate(betas):
            cache = class_sum(torch.mul(shifted, beta, out=buf).exp_(), cache_labels, c)
            scores = clip + alphas.view(-1, 1, 1) * cache  # [A, m, C]
            counts[i] += (scores.argmax(dim=-1) == y).sum(dim=1)
    return counts


def search_tip_hparams(features: torch.Tensor, labels: torch.Tensor, clip_weights: torch.Tensor,
                       cache_keys: torch.Tensor, cache_labels: torch.Tensor,
                       beta_grid: Sequence[float], alpha_grid: Sequence[float],
                       max_chunk_bytes: int = 1 << 28) -> Tuple[float, float, float]:
    """Grid-search (beta, alpha) for the best top-1 accuracy, with the official tie rule.

    The official loop runs beta outer and alpha inner, both ascending, and a pair replaces the best only if
    it is strictly better, so ties keep the earliest pair (smallest beta, then smallest alpha). This gives the
    same choice with about ``len(beta_grid)`` exps instead of ``len(beta_grid) * len(alpha_grid)`` dense
    matmuls (see :func:`tip_search_correct_counts`).

    Args:
        features (Tensor): [M, D] normalised validation features.
        labels (Tensor): [M] int64 labels.
        clip_weights (Tensor): [C, D].
        cache_keys (Tensor): [N, D].
        cache_labels (Tensor): [N].
        beta_grid (sequence of float): ascending sharpness values.
        alpha_grid (sequence of float): ascending residual ratios.
        max_chunk_bytes (int): bound on the temporaries of one chunk of queries.

    Returns:
        tuple: (beta, alpha, top1 in percent).
    """
    if features.shape[0] == 0:
        raise ValueError('the validation set is empty: nothing to search alpha and beta on')
    if len(beta_grid) == 0 or len(alpha_grid) == 0:
        raise ValueError('empty search grid')
    counts = tip_search_correct_counts(features, labels, clip_weights, cache_keys, cache_labels,
                                       beta_grid, alpha_grid, max_chunk_bytes)
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
