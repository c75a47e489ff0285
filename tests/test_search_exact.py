"""The alpha/beta search against a plain re-implementation of the official loop on data with exact ties.

The features are built so that many logits tie *exactly* in floating point: then the official ``topk(1)``
decides (see below), and the interval arithmetic of the search must hand these queries
to its exact path. The oracle is written from the official ``utils.py:search_hp`` (beta outer, alpha inner,
``((-1) * (beta - beta * affinity)).exp() @ one_hot``, top-1 accuracy, strict ``>``), with arbitrary grids.
On exact ties the top-1 class is the first maximum (``argmax``), the rule the search implements: the official
``topk(1)`` leaves ties to the backend, and on the CPU it does not return the first maximum (for float32 rows
of 12 logits tied at classes [0, 1, 5, 11] it returned 1, at [2, 9] it returned 9).
"""
import itertools

import pytest
import torch
import torch.nn.functional as F

import test_functional
from tip_adapter_mm import functional as tf


def argmax_acc(logits, labels):
    """Top-1 in percent with argmax's first maximum (the official ``topk(1)`` leaves exact ties to the backend)."""
    return 100 * int((logits.argmax(dim=1) == labels).sum()) / labels.shape[0]


def official_loop(*args):
    """(best beta, best alpha, best acc, correct counts [B, A]) of the official double loop, argmax top-1."""
    return test_functional.official_loop(*args, accuracy=argmax_acc)


def d4_vectors(dtype):
    """The 24 unit vectors (+-1, 0, 0, 0) (permuted) and (+-1/2, +-1/2, +-1/2, +-1/2): their dot products are
    in {-1, -1/2, 0, 1/2, 1}, for which beta * (a - 1) and -(beta - beta * a) are the same float, so the cache
    terms of ours and the official op order agree bit for bit and equal affinities give equal cache terms."""
    axes = [torch.eye(4, dtype=dtype)[i] * s for i in range(4) for s in (1., -1.)]
    halves = [torch.tensor(signs, dtype=dtype) / 2 for signs in itertools.product((1., -1.), repeat=4)]
    return torch.stack(axes + halves)


def assert_same(problem, beta_grid, alpha_grid):
    f, y, w, keys, cl = problem
    ref_beta, ref_alpha, ref_acc, ref_counts = official_loop(f, y, w, keys, cl, beta_grid, alpha_grid)
    counts = tf.tip_search_correct_counts(f, y, w, keys, cl, beta_grid, alpha_grid)
    assert torch.equal(counts, ref_counts)
    assert tf.search_tip_hparams(f, y, w, keys, cl, beta_grid, alpha_grid) == (ref_beta, ref_alpha, ref_acc)
    return ref_counts


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('seed', range(3))
def test_quantised_features_exact_ties(seed, dtype):
    """Queries and cache keys drawn from 24 lattice vectors, duplicated classes (same text weight and the
    same cache keys as an earlier class, so their logits are equal at every alpha and beta) and text weights
    on a coarse dyadic grid: many logits tie exactly, others differ by a rounding error."""
    gen = torch.Generator().manual_seed(seed)
    vecs = d4_vectors(dtype)
    c, k, m = 12, 2, 150  # two entries per class: their sum is the same float in any order (one-hot matmul)
    cache_idx = torch.randint(0, len(vecs), (c, k), generator=gen)
    text = torch.randint(-4, 5, (c, 4), generator=gen).to(dtype) / 64
    for dup, orig in ((5, 1), (9, 2), (11, 5)):  # class dup is an exact copy of the earlier class orig
        cache_idx[dup], text[dup] = cache_idx[orig], text[orig]
    cl = torch.arange(c).repeat_interleave(k)
    keys = vecs[cache_idx.view(-1)]
    y = torch.randint(0, c, (m,), generator=gen)
    f = vecs[torch.randint(0, len(vecs), (m,), generator=gen)]
    beta_grid, alpha_grid = tf.tip_search_grids([7, 3], [40, 20])
    counts = assert_same((f, y, text, keys, cl), beta_grid, alpha_grid)
    assert counts.max() > counts.min()
    # the data really ties: at some pair, a query's logit of its class equals another class's logit
    logits = tf.tip_logits(f, text, keys, cl, alpha_grid[3], beta_grid[5])
    top = logits.max(dim=1, keepdim=True).values
    assert int(((logits == top).sum(dim=1) > 1).sum()) >= 10


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_true_class_ties_at_grid_alphas(dtype):
    """Logits that tie exactly *at some grid alphas only*: the cache term of class c is the number n_c of
    its cache keys equal to the query (the other keys give exp(...) = 0 exactly), the CLIP logits are
    multiples of 100/256 and the alphas multiples of 25/64, so ``clip_y + alpha n_y == clip_c + alpha n_c`` holds
    exactly where alpha = (clip_c - clip_y) / (n_y - n_c) is on the grid. At such an alpha the true class loses
    to a lower-index class and wins over a higher-index one."""
    gen = torch.Generator().manual_seed(7)
    c, k, m = 10, 4, 400
    e0 = torch.eye(3, dtype=dtype)[0]
    hits = torch.randint(0, k + 1, (m, c), generator=gen)  # per query, how many keys of class c are the query
    # one query direction per query: e0 rotated into its own coordinates is not needed, the queries are all e0
    # and their cache differs by label only through ``hits`` of the label rows below
    y = torch.randint(0, c, (m,), generator=gen)
    x = torch.randint(0, 9, (c,), generator=gen).to(dtype) / 256  # text weight's first coordinate
    w = torch.zeros(c, 3, dtype=dtype)
    w[:, 0] = x
    # every query sees the same cache, so draw one cache per group of queries (one problem per group)
    alpha_grid = [25 / 64 * j for j in range(1, 17)]
    beta_grid = [0.1, 1.3, 5.0]
    total_ties = 0
    for g in range(8):
        n = hits[g]
        keys = torch.cat([torch.stack([e0 if j < n[cls] else -1e4 * e0 for j in range(k)]) for cls in range(c)])
        cl = torch.arange(c).repeat_interleave(k)
        f = e0.expand(m // 8, 3).contiguous()
        yy = y[g * (m // 8):(g + 1) * (m // 8)]
        assert_same((f, yy, w, keys, cl), beta_grid, alpha_grid)
        zc = 100. * x
        for a in alpha_grid:
            logit = zc + a * n.to(dtype)
            total_ties += int((logit.unsqueeze(0) == logit.unsqueeze(1)).triu(1).sum())
    assert total_ties >= 20  # exact ties between classes at grid alphas do occur


def crowded_problem(m, c, k, d, seed, dtype=torch.float32):
    """Features as a randomly initialised CLIP gives them: every image feature within about 0.003 of one
    common direction, every text feature within about 0.00003 of another, so that the cache term moves the
    logits of most classes past each other inside the alpha grid."""
    gen = torch.Generator().manual_seed(seed)
    image_dir, text_dir = F.normalize(torch.randn(2, d, generator=gen, dtype=torch.float64), dim=-1)

    def around(direction, n, scale):
        return F.normalize(direction + scale * torch.randn(n, d, generator=gen, dtype=torch.float64), dim=-1)

    y = torch.randint(0, c, (m,), generator=gen)
    cl = torch.arange(c).repeat_interleave(k)
    f, keys, w = around(image_dir, m, 0.003), around(image_dir, c * k, 0.003), around(text_dir, c, 0.00003)
    return f.to(dtype), y, w.to(dtype), keys.to(dtype), cl


@pytest.mark.parametrize('fraction', [-1., 2.])
@pytest.mark.parametrize('seed', range(2))
def test_crowded_features_dense_and_pair_paths(seed, fraction, monkeypatch):
    """On crowded features (most classes within reach of the true one at some alpha), both the dense path
    (every beta scored from [chunk, C] passes: fraction -1) and the candidate pairs (fraction 2: never dense)
    give the counts and the choice of the official loop, with several chunks of queries."""
    monkeypatch.setattr(tf, '_DENSE_FRACTION', fraction)
    # two cache entries per class: their sum is the same float in any order, as in the official one-hot matmul
    f, y, w, keys, cl = crowded_problem(240, 40, 2, 32, seed)
    beta_grid, alpha_grid = tf.tip_search_grids([7, 3], [30, 20])
    ref_beta, ref_alpha, ref_acc, ref_counts = official_loop(f, y, w, keys, cl, beta_grid, alpha_grid)
    assert ref_counts.max() > ref_counts.min()  # alpha and beta matter
    calls = []
    budget = 70 * 4 * (2 * keys.shape[0] + 42 * w.shape[0])  # about 70 queries per chunk: 4 chunks
    counts = tf.tip_search_correct_counts(f, y, w, keys, cl, beta_grid, alpha_grid, budget, progress=calls.append)
    assert torch.equal(counts, ref_counts)
    assert sum(calls) == len(beta_grid) and all(n >= 1 for n in calls)
    assert tf.search_tip_hparams(f, y, w, keys, cl, beta_grid, alpha_grid, budget) == (ref_beta, ref_alpha, ref_acc)


@pytest.mark.parametrize('seed', range(3))
def test_dense_path_exact_ties(seed, monkeypatch):
    """The dense path on the lattice features of :func:`test_quantised_features_exact_ties` (exact ties)."""
    monkeypatch.setattr(tf, '_DENSE_FRACTION', -1.)
    test_quantised_features_exact_ties(seed, torch.float32)
