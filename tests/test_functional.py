"""Tests of :mod:`tip_adapter_mm.functional` against plain re-implementations of the official Tip-Adapter code.

The references below (``dense_tip_logits``, ``official_cls_acc``, ``official_search_hp``) follow the official
``utils.py`` / ``main.py`` line by line (see ``/work/shared/notes/tip_adapter.md`` §3-§4), only with our
shape conventions: clip_weights [C, D] instead of [D, C], cache_keys [N, D] instead of [D, NK], and the
one-hot cache values built explicitly with ``num_classes=C``. Exact comparisons are done in float64.
"""
import importlib.util
import math
import pathlib
import sys

import pytest
import torch
import torch.nn.functional as F


def _load_functional():
    """Import ``tip_adapter_mm.functional`` on its own.

    The module is pure torch; loading it from its file skips the package ``__init__`` (which registers the
    mmpretrain modules and takes seconds), keeps this file fast and checks that the module needs no mm* import.
    """
    path = pathlib.Path(__file__).resolve().parents[1] / 'tip_adapter_mm' / 'functional.py'
    if not path.is_file():  # installed elsewhere: the normal import
        from tip_adapter_mm import functional
        return functional
    spec = importlib.util.spec_from_file_location('_tip_adapter_mm_functional_under_test', path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


tf = _load_functional()

DT = torch.float64


@pytest.fixture(autouse=True, scope='module')
def _single_thread():
    """The tensors here are tiny: threads only add overhead (and stall when the machine is busy)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---------------------------------------------------------------------------------------------------------
# plain re-implementations of the official code
# ---------------------------------------------------------------------------------------------------------
def one_hot_values(cache_labels, num_classes, dtype=DT):
    """The official ``cache_values`` (``F.one_hot(labels)``), with an explicit width."""
    return F.one_hot(cache_labels, num_classes).to(dtype)


def dense_tip_logits(features, clip_weights, cache_keys, cache_labels, alpha, beta):
    """``main.py``: clip_logits + cache_logits * alpha with the official op order."""
    cache_values = one_hot_values(cache_labels, clip_weights.shape[0], features.dtype)
    affinity = features @ cache_keys.t()
    cache_logits = ((-1) * (beta - beta * affinity)).exp() @ cache_values
    clip_logits = 100. * features @ clip_weights.t()
    return clip_logits + cache_logits * alpha


def official_cls_acc(output, target, topk=1):
    """``utils.py:cls_acc``."""
    pred = output.topk(topk, 1, True, True)[1].t()
    correct = pred.eq(target.view(1, -1).expand_as(pred))
    # official: float(....sum(0, keepdim=True).cpu().numpy()); .item() is the same value (newer numpy
    # refuses float() of a 1-element array)
    acc = correct[:topk].reshape(-1).float().sum(0, keepdim=True).item()
    return 100 * acc / target.shape[0]


def official_grid(scale, steps):
    return [i * (scale - 0.1) / steps + 0.1 for i in range(steps)]


def official_search_hp(search_scale, search_step, features, labels, clip_weights, cache_keys, cache_labels):
    """``utils.py:search_hp``: the 4000-step double loop, strict ``>``, best_acc starting at 0.

    Also returns the grid of correct counts (acc * M / 100) seen by the loop, in [beta, alpha] order.
    """
    beta_list = [i * (search_scale[0] - 0.1) / search_step[0] + 0.1 for i in range(search_step[0])]
    alpha_list = [i * (search_scale[1] - 0.1) / search_step[1] + 0.1 for i in range(search_step[1])]
    return official_loop(features, labels, clip_weights, cache_keys, cache_labels, beta_list, alpha_list)


def official_loop(features, labels, clip_weights, cache_keys, cache_labels, beta_list, alpha_list,
                  accuracy=official_cls_acc):
    """The official double loop over given grids: (best beta, best alpha, best acc, correct counts [B, A]).

    ``accuracy(logits, labels)`` is the top-1 in percent: the official ``cls_acc`` by default.
    """
    cache_values = one_hot_values(cache_labels, clip_weights.shape[0], features.dtype)
    counts = torch.zeros(len(beta_list), len(alpha_list), dtype=torch.long)
    best_acc = 0
    best_beta, best_alpha = 0, 0
    for bi, beta in enumerate(beta_list):
        for ai, alpha in enumerate(alpha_list):
            affinity = features @ cache_keys.t()
            cache_logits = ((-1) * (beta - beta * affinity)).exp() @ cache_values
            clip_logits = 100. * features @ clip_weights.t()
            tip_logits = clip_logits + cache_logits * alpha
            acc = accuracy(tip_logits, labels)
            counts[bi, ai] = round(acc * labels.shape[0] / 100)
            if acc > best_acc:
                best_acc = acc
                best_beta = beta
                best_alpha = alpha
    return best_beta, best_alpha, best_acc, counts


# ---------------------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------------------
def make_cache_labels(layout, num_classes, shots, gen):
    grouped = torch.arange(num_classes).repeat_interleave(shots)
    if layout == 'grouped':
        return grouped
    if layout == 'shuffled':  # K per class, random order
        return grouped[torch.randperm(grouped.numel(), generator=gen)]
    if layout == 'uneven':  # different counts per class, class 1 and the last class empty, random order
        counts = torch.randint(1, 2 * shots + 1, (num_classes,), generator=gen)
        counts[1] = 0
        counts[-1] = 0
        labels = torch.arange(num_classes).repeat_interleave(counts)
        return labels[torch.randperm(labels.numel(), generator=gen)]
    if layout == 'sorted_uneven':  # sorted by class, N divisible by C but not K per class
        counts = torch.full((num_classes,), shots)
        counts[0] += 1
        counts[2] -= 1
        return torch.arange(num_classes).repeat_interleave(counts)
    raise AssertionError(layout)


def make_problem(seed, m, c, k, d, layout='grouped', clip_noise=1.5, query_noise=1.0, key_noise=1.0,
                 text_margin=0.1, dtype=DT):
    """Features near class prototypes, cache keys near the same prototypes, a noisy text classifier.

    As with CLIP, the text embeddings share a common direction and differ by a small class-specific part
    (``text_margin``), so that the zero-shot logits 100 f Wᵀ differ by a few units between classes and the
    cache term (alpha up to a few) can change predictions. ``text_margin=None`` drops the common direction
    (confident zero-shot classifier).
    """
    gen = torch.Generator().manual_seed(seed)
    protos = F.normalize(torch.randn(c, d, generator=gen, dtype=dtype), dim=-1)
    clip_weights = F.normalize(protos + clip_noise * torch.randn(c, d, generator=gen, dtype=dtype) / math.sqrt(d),
                               dim=-1)
    if text_margin is not None:
        common = F.normalize(torch.randn(d, generator=gen, dtype=dtype), dim=0)
        clip_weights = F.normalize(common + text_margin * clip_weights, dim=-1)
    labels = torch.randint(0, c, (m,), generator=gen)
    features = F.normalize(protos[labels] + query_noise * torch.randn(m, d, generator=gen, dtype=dtype)
                           / math.sqrt(d), dim=-1)
    cache_labels = make_cache_labels(layout, c, k, gen)
    cache_keys = F.normalize(protos[cache_labels]
                             + key_noise * torch.randn(cache_labels.numel(), d, generator=gen, dtype=dtype)
                             / math.sqrt(d), dim=-1)
    return features, labels, clip_weights, cache_keys, cache_labels


LAYOUTS = ['grouped', 'shuffled', 'uneven', 'sorted_uneven']


# ---------------------------------------------------------------------------------------------------------
# tip_logits / class_sum
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('layout', LAYOUTS)
@pytest.mark.parametrize('seed', [0, 1])
def test_tip_logits_matches_dense(layout, seed):
    f, _, w, keys, cl = make_problem(seed, m=23, c=7, k=3, d=16, layout=layout)
    if layout == 'uneven':
        assert (torch.bincount(cl, minlength=7) == 0).any()
    for alpha, beta in [(1.0, 5.5), (2.7, 0.1), (0.3, 30.)]:
        ours = tf.tip_logits(f, w, keys, cl, alpha, beta)
        ref = dense_tip_logits(f, w, keys, cl, alpha, beta)
        assert ours.shape == (23, 7)
        torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-10)
        # and the cache term really contributes
        assert not torch.allclose(ours, 100. * f @ w.t())


@pytest.mark.parametrize('layout', LAYOUTS)
def test_class_sum_equals_one_hot_matmul(layout):
    gen = torch.Generator().manual_seed(3)
    cl = make_cache_labels(layout, 6, 4, gen)
    values = torch.randn(9, cl.numel(), generator=gen, dtype=DT)
    torch.testing.assert_close(tf.class_sum(values, cl, 6), values @ one_hot_values(cl, 6))


def test_grouped_detection():
    assert tf._shots_if_grouped(torch.arange(4).repeat_interleave(3), 4) == 3
    assert tf._shots_if_grouped(torch.tensor([0, 0, 0, 1, 2, 2]), 3) is None
    assert tf._shots_if_grouped(torch.tensor([0, 1, 0, 1]), 2) is None
    assert tf._shots_if_grouped(torch.tensor([0, 0, 1, 1]), 3) is None


def test_tip_logits_alpha_zero_is_zero_shot():
    f, _, w, keys, cl = make_problem(0, m=11, c=5, k=2, d=8)
    zero_shot = 100. * f @ w.t()
    assert torch.equal(tf.tip_logits(f, w, keys, cl, 0., 5.), zero_shot)
    assert torch.equal(tf.tip_logits(f, w, keys, cl, torch.tensor(0., dtype=DT), torch.tensor(5., dtype=DT)),
                       zero_shot)


def test_tip_logits_empty_cache_is_zero_shot():
    f, _, w, _, _ = make_problem(0, m=11, c=5, k=2, d=8)
    keys = torch.zeros(0, 8, dtype=DT)
    cl = torch.zeros(0, dtype=torch.long)
    out = tf.tip_logits(f, w, keys, cl, 1.7, 3.)
    assert out.shape == (11, 5)
    assert torch.equal(out, 100. * f @ w.t())
    torch.testing.assert_close(out, dense_tip_logits(f, w, keys, cl, 1.7, 3.))


@pytest.mark.parametrize('layout', ['grouped', 'uneven'])
def test_tip_logits_tensor_scalars(layout):
    f, _, w, keys, cl = make_problem(2, m=13, c=6, k=3, d=12, layout=layout)
    as_float = tf.tip_logits(f, w, keys, cl, 1.25, 4.5)
    alpha = torch.tensor(1.25, dtype=DT)
    beta = torch.tensor(4.5, dtype=DT)
    assert alpha.dim() == 0 and beta.dim() == 0
    as_tensor = tf.tip_logits(f, w, keys, cl, alpha, beta)
    torch.testing.assert_close(as_tensor, as_float, rtol=1e-14, atol=1e-12)
    torch.testing.assert_close(as_tensor, dense_tip_logits(f, w, keys, cl, 1.25, 4.5), rtol=1e-12, atol=1e-10)


@pytest.mark.parametrize('layout', ['grouped', 'shuffled', 'uneven'])
def test_tip_logits_gradients_to_cache_keys(layout):
    f, y, w, keys, cl = make_problem(4, m=9, c=5, k=2, d=6, layout=layout)
    keys_ours = keys.clone().requires_grad_(True)
    keys_ref = keys.clone().requires_grad_(True)
    alpha = torch.tensor(1.3, dtype=DT, requires_grad=True)
    beta = torch.tensor(5.0, dtype=DT, requires_grad=True)
    F.cross_entropy(tf.tip_logits(f, w, keys_ours, cl, alpha, beta), y).backward()
    F.cross_entropy(dense_tip_logits(f, w, keys_ref, cl, 1.3, 5.0), y).backward()
    assert keys_ours.grad is not None and keys_ours.grad.abs().sum() > 0
    torch.testing.assert_close(keys_ours.grad, keys_ref.grad, rtol=1e-10, atol=1e-12)
    # alpha and beta are differentiable as well (learnable variants)
    assert alpha.grad is not None and beta.grad is not None
    # and the analytic gradient of the keys is right
    assert torch.autograd.gradcheck(lambda k: tf.tip_logits(f, w, k, cl, 1.3, 5.0),
                                    (keys.clone().requires_grad_(True),))


# ---------------------------------------------------------------------------------------------------------
# grid search vs. the official double loop
# ---------------------------------------------------------------------------------------------------------
def assert_same_search(problem, search_scale, search_step, max_chunk_bytes=1 << 28):
    f, y, w, keys, cl = problem
    beta_grid, alpha_grid = tf.tip_search_grids(search_scale, search_step)
    ref_beta, ref_alpha, ref_acc, ref_counts = official_search_hp(search_scale, search_step, f, y, w, keys, cl)
    counts = tf.tip_search_correct_counts(f, y, w, keys, cl, beta_grid, alpha_grid, max_chunk_bytes)
    assert counts.dtype == torch.long and counts.shape == (search_step[0], search_step[1])
    assert torch.equal(counts, ref_counts)
    beta, alpha, acc = tf.search_tip_hparams(f, y, w, keys, cl, beta_grid, alpha_grid, max_chunk_bytes)
    assert (beta, alpha, acc) == (ref_beta, ref_alpha, ref_acc)
    return counts, (beta, alpha, acc)


@pytest.mark.parametrize('seed,m,c,k,d,layout', [
    (0, 60, 10, 4, 16, 'grouped'),
    (1, 97, 13, 2, 32, 'grouped'),
    (2, 64, 8, 5, 24, 'shuffled'),
    (3, 80, 9, 3, 16, 'uneven'),
    (4, 50, 6, 4, 12, 'sorted_uneven'),
    (5, 120, 20, 1, 16, 'grouped'),
])
def test_search_matches_official_loop(seed, m, c, k, d, layout):
    counts, _ = assert_same_search(make_problem(seed, m, c, k, d, layout=layout), [7, 3], [25, 8])
    assert counts.max() > counts.min()  # the search is not trivial on this data


def test_search_matches_official_loop_full_imagenet_grid():
    problem = make_problem(7, m=40, c=8, k=2, d=8, layout='uneven', clip_noise=2.0)
    counts, (beta, alpha, _) = assert_same_search(problem, [7, 3], [200, 20])
    assert counts.max() > counts.min()


@pytest.mark.parametrize('search_scale', [[12, 5], [50, 50]])
def test_search_matches_official_loop_other_scales(search_scale):
    assert_same_search(make_problem(8, m=70, c=10, k=3, d=16, layout='shuffled'), search_scale, [30, 10])


@pytest.mark.parametrize('layout', ['grouped', 'uneven'])
def test_search_ties_small_m(layout):
    """With a handful of queries many (beta, alpha) pairs reach the same best accuracy: the earliest pair in
    beta-major / alpha-minor order must win, as in the official loop."""
    scale, step = [7, 3], [20, 10]
    beta_grid, alpha_grid = tf.tip_search_grids(scale, step)
    n_tied = n_not_origin = n_orders_differ = 0
    for m in (1, 2, 3, 5):
        for seed in range(8):
            f, y, w, keys, cl = make_problem(100 + seed, m=m, c=4, k=3, d=8, layout=layout)
            counts = tf.tip_search_correct_counts(f, y, w, keys, cl, beta_grid, alpha_grid)
            best = counts.max()
            if best == 0:  # official returns (0, 0) here, see test_search_all_wrong_returns_first_grid_pair
                ref_counts = official_search_hp(scale, step, f, y, w, keys, cl)[3]
                assert torch.equal(counts, ref_counts)
                continue
            counts, (beta, alpha, _) = assert_same_search((f, y, w, keys, cl), scale, step)
            maxima = [(i, j) for i in range(step[0]) for j in range(step[1]) if counts[i, j] == best]
            assert (beta, alpha) == (beta_grid[maxima[0][0]], alpha_grid[maxima[0][1]])
            n_tied += len(maxima) > 1
            n_not_origin += len(maxima) > 1 and maxima[0] != (0, 0)
            n_orders_differ += min(maxima) != min(maxima, key=lambda ij: (ij[1], ij[0]))
    # the data really exercises the tie rule
    assert n_tied >= 15 and n_not_origin >= 5 and n_orders_differ >= 1, (n_tied, n_not_origin, n_orders_differ)


def test_search_ties_cache_barely_matters():
    """Confident zero-shot classifier: every pair gives the same accuracy, the first pair wins."""
    f, y, w, keys, cl = make_problem(9, m=30, c=6, k=2, d=64, clip_noise=0.0, query_noise=0.3, text_margin=None)
    y = y.clone()
    y[:4] = (y[:4] + 1) % 6  # a few label errors so that the tied accuracy is below 100
    counts, (beta, alpha, acc) = assert_same_search((f, y, w, keys, cl), [7, 3], [20, 20])
    assert (counts == counts[0, 0]).all()
    assert (beta, alpha) == (0.1, 0.1)
    assert acc == pytest.approx(100. * 26 / 30)


def test_search_tie_rule_staircase():
    """A constructed case where the best set is a staircase: beta-major order and alpha-major order pick
    different pairs, and the official loop (beta outer, strict >) picks the beta-major first one.

    One query of class 1; the cache holds the query itself (class 1, affinity 1) and a class-0 key at
    affinity 0.5, so cache(1) - cache(0) = 1 - exp(-beta / 2) grows with beta; the text classifier prefers
    class 0 by 0.5 logits. The query is right iff alpha * (1 - exp(-beta / 2)) > 0.5.
    """
    f = torch.tensor([[1., 0., 0.]], dtype=DT)
    y = torch.tensor([1])
    keys = torch.tensor([[1., 0., 0.], [0.5, math.sqrt(0.75), 0.]], dtype=DT)
    cl = torch.tensor([1, 0])
    w = torch.tensor([[0.6, 0., 0.8], [0.595, 0., math.sqrt(1 - 0.595 ** 2)]], dtype=DT)
    scale, step = [7, 3], [20, 20]
    counts, (beta, alpha, acc) = assert_same_search((f, y, w, keys, cl), scale, step)
    beta_grid, alpha_grid = tf.tip_search_grids(scale, step)
    right = [(i, j) for i, b in enumerate(beta_grid) for j, a in enumerate(alpha_grid)
             if a * (1 - math.exp(-b / 2)) > 0.5 + 1e-9]
    assert torch.equal(counts.bool(), torch.tensor([[(i, j) in right for j in range(20)] for i in range(20)]))
    beta_major = min(right)
    alpha_major = min(right, key=lambda ij: (ij[1], ij[0]))
    assert beta_major != alpha_major
    assert (beta, alpha, acc) == (beta_grid[beta_major[0]], alpha_grid[beta_major[1]], 100.)


def test_search_tie_rule_on_crafted_counts(monkeypatch):
    """The selection step alone: first maximum in beta-major / alpha-minor order, like strict > in a loop."""
    crafted = torch.tensor([[0, 1, 2, 1],
                            [3, 0, 0, 0],
                            [0, 1, 3, 3],
                            [3, 3, 3, 3]])
    for grid_counts, expected in [(crafted, (1, 0)), (crafted.t().contiguous(), (0, 1)),
                                  (torch.full((4, 4), 2), (0, 0)), (torch.eye(4, dtype=torch.long).flip(1), (0, 3))]:
        monkeypatch.setattr(tf, 'tip_search_correct_counts', lambda *a, _c=grid_counts, **k: _c)
        best, pick = -1, None
        for i in range(4):
            for j in range(4):
                if grid_counts[i, j] > best:
                    best, pick = grid_counts[i, j], (i, j)
        assert pick == expected
        f = torch.zeros(4, 2, dtype=DT)
        beta, alpha, acc = tf.search_tip_hparams(f, torch.zeros(4, dtype=torch.long), None, None, None,
                                                 [1., 2., 3., 4.], [10., 20., 30., 40.])
        assert (beta, alpha) == (1. + expected[0], 10. * (1 + expected[1]))
        assert acc == 100. * best.item() / 4


def test_search_all_wrong_returns_first_grid_pair():
    """Documented difference: when every pair scores 0 %, the official loop never updates and returns
    (beta, alpha) = (0, 0), which is not a grid point; we return the first grid pair (and 0 %)."""
    f, y, w, keys, cl = make_problem(10, m=5, c=4, k=2, d=8, clip_noise=0.0, query_noise=0.1, text_margin=None)
    y = (y + 1) % 4  # every query mislabeled: accuracy 0 for every pair
    ref = official_search_hp([7, 3], [5, 5], f, y, w, keys, cl)
    assert ref[:3] == (0, 0, 0)
    assert (ref[3] == 0).all()
    beta_grid, alpha_grid = tf.tip_search_grids([7, 3], [5, 5])
    assert tf.search_tip_hparams(f, y, w, keys, cl, beta_grid, alpha_grid) == (0.1, 0.1, 0.)


def test_search_accuracy_consistent_with_tip_logits():
    f, y, w, keys, cl = make_problem(11, m=90, c=9, k=3, d=16, layout='shuffled')
    beta_grid, alpha_grid = tf.tip_search_grids([7, 3], [15, 6])
    beta, alpha, acc = tf.search_tip_hparams(f, y, w, keys, cl, beta_grid, alpha_grid)
    assert acc == tf.topk_accuracy(tf.tip_logits(f, w, keys, cl, alpha, beta), y)


def test_search_empty_cache_is_zero_shot_everywhere():
    f, y, w, _, _ = make_problem(12, m=40, c=5, k=2, d=8)
    keys, cl = torch.zeros(0, 8, dtype=DT), torch.zeros(0, dtype=torch.long)
    counts, (beta, alpha, acc) = assert_same_search((f, y, w, keys, cl), [7, 3], [4, 3])
    assert (counts == counts[0, 0]).all()
    assert acc == official_cls_acc(100. * f @ w.t(), y)


def test_search_empty_validation_set_raises():
    _, _, w, keys, cl = make_problem(0, m=4, c=5, k=2, d=8)
    f = torch.zeros(0, 8, dtype=DT)
    y = torch.zeros(0, dtype=torch.long)
    with pytest.raises(ValueError, match='empty'):
        tf.search_tip_hparams(f, y, w, keys, cl, [1.], [1.])


def test_search_empty_grid_raises():
    f, y, w, keys, cl = make_problem(0, m=4, c=5, k=2, d=8)
    with pytest.raises(ValueError):
        tf.search_tip_hparams(f, y, w, keys, cl, [], [1.])
    with pytest.raises(ValueError):
        tf.search_tip_hparams(f, y, w, keys, cl, [1.], [])


def spy_class_sum(monkeypatch, dim):
    """Record ``values.shape[dim]`` of every ``functional.class_sum`` call (into the returned list)."""
    seen = []
    real_class_sum = tf.class_sum

    def spy(values, *args, **kwargs):
        seen.append(values.shape[dim])
        return real_class_sum(values, *args, **kwargs)

    monkeypatch.setattr(tf, 'class_sum', spy)
    return seen


# ---------------------------------------------------------------------------------------------------------
# chunking
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('layout', ['grouped', 'uneven'])
def test_chunking_does_not_change_results(layout, monkeypatch):
    m = 37  # prime: no chunk size > 1 divides it
    f, y, w, keys, cl = make_problem(13, m=m, c=6, k=3, d=16, layout=layout)
    grids = tf.tip_search_grids([7, 3], [12, 7])
    n, c, a = keys.shape[0], w.shape[0], 7
    row_bytes = 8 * (2 * n + (2 + 2 * a) * c) + 1  # what functional.py budgets per query row

    # the pair path only (one class_sum per anchor beta and chunk); chunking with the dense path: test_search_exact
    monkeypatch.setattr(tf, '_DENSE_FRACTION', 2.)
    seen = spy_class_sum(monkeypatch, dim=0)
    results = {}
    for budget in [None, 1, 5 * row_bytes + 3, 8 * row_bytes, 10 ** 12]:
        seen.clear()
        kwargs = {} if budget is None else {'max_chunk_bytes': budget}
        counts = tf.tip_search_correct_counts(f, y, w, keys, cl, *grids, **kwargs)
        chunk_rows = seen[::12]  # one call per beta per chunk
        best = tf.search_tip_hparams(f, y, w, keys, cl, *grids, **kwargs)
        assert sum(chunk_rows) == m
        results[budget] = (counts, best, chunk_rows)
    assert results[1][2] == [1] * m
    assert results[5 * row_bytes + 3][2] == [5] * 7 + [2]  # 5 does not divide 37
    assert results[8 * row_bytes][2] == [8] * 4 + [5]
    assert results[None][2] == [m]
    for counts, best, _ in results.values():
        assert torch.equal(counts, results[None][0])
        assert best == results[None][1]
    monkeypatch.undo()
    assert_same_search((f, y, w, keys, cl), [7, 3], [12, 7], max_chunk_bytes=5 * row_bytes + 3)


# ---------------------------------------------------------------------------------------------------------
# the pruned search (candidate classes, anchor betas): adversarial cases
# ---------------------------------------------------------------------------------------------------------
def official_counts(f, y, w, keys, cl, beta_grid, alpha_grid):
    """The official loop's correct counts (topk accuracy of the dense logits) on arbitrary grids."""
    counts = torch.zeros(len(beta_grid), len(alpha_grid), dtype=torch.long)
    for i, beta in enumerate(beta_grid):
        for j, alpha in enumerate(alpha_grid):
            acc = official_cls_acc(dense_tip_logits(f, w, keys, cl, alpha, beta), y)
            counts[i, j] = round(acc * y.shape[0] / 100)
    return counts


def dense_counts(f, y, w, keys, cl, beta_grid, alpha_grid):
    """Counts from the dense [A, M, C] logits with our cache term (exp of beta (A - 1), class_sum), by argmax:
    the values the pruned search must reproduce exactly."""
    alphas = torch.tensor(alpha_grid, dtype=f.dtype)
    clip = 100. * f @ w.t()
    shifted = f @ keys.t() - 1.
    counts = torch.zeros(len(beta_grid), len(alpha_grid), dtype=torch.long)
    for i, beta in enumerate(beta_grid):
        cache = tf.class_sum(torch.mul(shifted, beta).exp(), cl, w.shape[0])
        counts[i] = ((clip + alphas.view(-1, 1, 1) * cache).argmax(dim=-1) == y).sum(dim=1)
    return counts


def clip_like_problem(seed, m, c, k, d, layout='grouped', dtype=torch.float32):
    """Like CLIP features (and the benchmark's data): a common direction in every image and every text
    embedding, so that many classes are close to the true one and the search has many candidates."""
    gen = torch.Generator().manual_seed(seed)
    protos = F.normalize(torch.randn(c, d, generator=gen, dtype=dtype), dim=-1)
    text = F.normalize(torch.randn(d, generator=gen, dtype=dtype), dim=0)
    w = F.normalize(text + 0.2 * F.normalize(protos + 2.5 * torch.randn(c, d, generator=gen, dtype=dtype)
                                             / math.sqrt(d), dim=-1), dim=-1)
    image = F.normalize(torch.randn(d, generator=gen, dtype=dtype), dim=0)
    basis = F.normalize(torch.randn(4, d, generator=gen, dtype=dtype), dim=-1)

    def images(lab):
        nuisance = torch.randn(lab.numel(), 4, generator=gen, dtype=dtype) @ basis / 2.
        return F.normalize(image + 0.5 * protos[lab] + 1.2 * nuisance, dim=-1)

    y = torch.randint(0, c, (m,), generator=gen)
    cl = make_cache_labels(layout, c, k, gen)
    return images(y), y, w, images(cl), cl


def basis_problem(d, text_first, cache_axes, labels):
    """Hand-made problem with exact logits: every query is e0; class c's text weight is
    ``text_first[c] e0 + sqrt(1 - text_first[c]^2) e_(c+1)`` (so its CLIP logit is exactly 100 text_first[c] for
    dyadic values), and the cache holds one key per entry of ``cache_axes`` (an axis index: 0 is the query
    itself, affinity 1 and cache term exactly 1 at every beta; another axis is orthogonal, cache term
    exp(-beta))."""
    c = len(text_first)
    w = torch.zeros(c, d, dtype=DT)
    for i, a in enumerate(text_first):
        w[i, 0], w[i, i + 1] = a, math.sqrt(1 - a * a)
    keys_axes, key_labels = zip(*cache_axes)
    keys = torch.zeros(len(keys_axes), d, dtype=DT)
    keys[torch.arange(len(keys_axes)), torch.tensor(keys_axes)] = 1.
    y = torch.tensor(labels)
    f = torch.zeros(len(labels), d, dtype=DT)
    f[:, 0] = 1.
    return f, y, w, keys, torch.tensor(key_labels)


@pytest.mark.parametrize('tie_at', ['first', 'middle', 'last'])
@pytest.mark.parametrize('competitor_below', [True, False])
def test_search_exact_tie_at_alpha_boundary(tie_at, competitor_below):
    """The competitor's logit equals y's exactly at one alpha of the grid (the crossing point of the two
    lines, at either end of the alpha range or inside it): below that alpha y wins, above it the competitor
    does, and at it the lower class index wins, as with topk/argmax."""
    # CLIP logits 62.5 (y) and 62.01171875 (competitor); cache terms 1 (y: one key = the query) and 2 (the
    # competitor: two such keys): tie at alpha = 0.48828125, every number exact in binary
    tie = 0.48828125
    alpha_grid = {'first': [tie, 0.75, 1.0], 'middle': [0.25, tie, 0.75], 'last': [0.125, 0.25, tie]}[tie_at]
    comp, true = (0, 1) if competitor_below else (1, 0)
    text = [0.] * 3
    text[true], text[comp], text[2] = 640 / 1024, 635 / 1024, 0.25
    problem = basis_problem(8, text, [(0, true), (0, comp), (0, comp), (6, 2)], [true])
    beta_grid = tf.search_grid(7, 25)  # anchors and betas between them
    counts = tf.tip_search_correct_counts(*problem, beta_grid, alpha_grid)
    assert torch.equal(counts, official_counts(*problem, beta_grid, alpha_grid))
    j = alpha_grid.index(tie)
    expected = torch.tensor([1 if a < tie else 0 for a in alpha_grid])
    expected[j] = 0 if competitor_below else 1
    assert torch.equal(counts, expected.expand(len(beta_grid), -1))


def test_search_true_class_wins_only_in_the_middle_of_alpha():
    """Three classes on one query: a wins at small alpha (best CLIP logit), b at large alpha (largest cache
    term), the true class in between (for large enough beta); one query per class, so exactly one of the
    three is right at every (beta, alpha)."""
    # class 0 (a): CLIP 64.0625, cache exp(-beta); class 1: CLIP 62.5, cache 1; class 2 (b): CLIP 54.6875,
    # cache 2. Class 1 wins iff 1.5625 / (1 - exp(-beta)) < alpha < 7.8125.
    problem = basis_problem(8, [656 / 1024, 640 / 1024, 560 / 1024],
                            [(5, 0), (0, 1), (0, 2), (0, 2)], [0, 1, 2])
    beta_grid, alpha_grid = tf.tip_search_grids([7, 10], [30, 20])
    counts = tf.tip_search_correct_counts(*problem, beta_grid, alpha_grid)
    assert torch.equal(counts, official_counts(*problem, beta_grid, alpha_grid))
    assert (counts == 1).all()
    f, y, w, keys, cl = problem
    middle = tf.tip_search_correct_counts(f[1:2], y[1:2], w, keys, cl, beta_grid, alpha_grid)
    for i, beta in enumerate(beta_grid):
        expected = [int(1.5625 / (1 - math.exp(-beta)) < a < 7.8125) for a in alpha_grid]
        assert middle[i].tolist() == expected
    assert middle[-1, 0] == 0 and middle[-1, -1] == 0 and middle[-1].sum() > 5  # strictly inside the range
    beta, alpha, acc = tf.search_tip_hparams(f[1:2], y[1:2], w, keys, cl, beta_grid, alpha_grid)
    assert acc == 100. and 1.5625 / (1 - math.exp(-beta)) < alpha < 7.8125


def test_search_empty_class_ties_at_alpha_zero():
    """An empty class (cache term exactly 0) with the same text weight as the true class ties with it at
    alpha = 0 and wins the tie when its index is lower; for alpha > 0 the true class's cache term decides.
    N = 2 < C = 3."""
    f, y, w, keys, cl = basis_problem(8, [0.625, 0.625, 0.25], [(0, 1), (6, 2)], [1, 0])
    w[0] = w[1]
    beta_grid, alpha_grid = tf.search_grid(7, 25), [0., 0.5, 1.0]
    counts = tf.tip_search_correct_counts(f, y, w, keys, cl, beta_grid, alpha_grid)
    assert torch.equal(counts, official_counts(f, y, w, keys, cl, beta_grid, alpha_grid))
    # alpha = 0: class 0 wins the tie (query 1 wrong, query 0 right); alpha > 0: class 1 wins
    assert (counts == 1).all()
    only_1 = tf.tip_search_correct_counts(f[:1], y[:1], w, keys, cl, beta_grid, alpha_grid)
    assert (only_1[:, 0] == 0).all() and (only_1[:, 1:] == 1).all()


@pytest.mark.parametrize('layout', ['grouped', 'shuffled'])
@pytest.mark.parametrize('dtype', [torch.float64, torch.float32])
def test_search_duplicate_classes_tie_everywhere(layout, dtype):
    """Class 4 duplicates class 1 (same text weight, same cache keys): their logits are equal at every
    (beta, alpha), and class 1, the lower index, wins every tie: queries of class 4 are never right, and
    queries of class 1 are right exactly where they are without class 4.

    Features, text weights and keys have entries in {-1/4, 0, 1/4}, so that every matmul is exact and the
    two classes' CLIP logits and affinities are equal bit for bit. (Not compared with the official loop: its
    one-hot matmul rounds the two identical columns differently, by ~1e-16, so its "ties" go either way.)"""
    gen = torch.Generator().manual_seed(17)
    f, w = (torch.randint(-1, 2, (n, 8), generator=gen).to(dtype) / 4 for n in (60, 6))
    y = torch.randint(0, 6, (60,), generator=gen)
    cl = make_cache_labels(layout, 6, 3, gen)
    keys = torch.randint(-1, 2, (cl.numel(), 8), generator=gen).to(dtype) / 4
    w[4] = w[1]
    keys[cl == 4] = keys[cl == 1]  # the same keys, in the same order
    beta_grid, alpha_grid = tf.tip_search_grids([7, 3], [45, 10])
    counts = tf.tip_search_correct_counts(f, y, w, keys, cl, beta_grid, alpha_grid)
    assert torch.equal(counts, dense_counts(f, y, w, keys, cl, beta_grid, alpha_grid))
    of_4 = y == 4
    assert of_4.any() and (y == 1).any()
    counts_4 = tf.tip_search_correct_counts(f[of_4], y[of_4], w, keys, cl, beta_grid, alpha_grid)
    assert (counts_4 == 0).all()
    # ... although the tied pair is often the best: labelled 1, the same queries are right
    assert tf.tip_search_correct_counts(f[of_4], torch.ones_like(y[of_4]), w, keys, cl, beta_grid,
                                        alpha_grid).sum() > 0
    of_1 = y == 1
    keep = cl != 4
    w5 = torch.cat([w[:4], w[5:]])
    cl5 = cl[keep] - (cl[keep] > 4).long()
    without_4 = tf.tip_search_correct_counts(f[of_1], y[of_1], w5, keys[keep], cl5, beta_grid, alpha_grid)
    with_4 = tf.tip_search_correct_counts(f[of_1], y[of_1], w, keys, cl, beta_grid, alpha_grid)
    assert torch.equal(with_4, without_4)


@pytest.mark.parametrize('m,c,k,layout', [
    (1, 1, 3, 'grouped'),    # one query, one class: always right
    (1, 5, 2, 'grouped'),    # one query
    (7, 1, 1, 'grouped'),    # one class
    (9, 6, 1, 'grouped'),    # one shot
    (9, 6, 2, 'uneven'),     # empty classes, N not a multiple of C
    (9, 7, 1, 'sorted_uneven'),
])
def test_search_small_shapes(m, c, k, layout):
    counts, _ = assert_same_search(make_problem(18 + m + c, m=m, c=c, k=k, d=8, layout=layout), [7, 3], [45, 20])
    if c == 1:
        assert (counts == m).all()


def test_search_few_cache_entries_many_classes():
    """N = 4 cache entries for C = 9 classes (most classes empty, N not a multiple of C)."""
    f, y, w, _, _ = make_problem(19, m=30, c=9, k=1, d=16)
    keys, cl = f[:4] * 0.9 + 0.1 * f[4:8], y[:4]
    keys = F.normalize(keys, dim=-1)
    assert_same_search((f, y, w, keys, cl), [7, 3], [45, 20])


@pytest.mark.parametrize('layout', ['grouped', 'shuffled', 'uneven'])
def test_search_negative_alpha_and_unsorted_betas(layout):
    """Any grids: alphas of both signs (nothing can be pruned from the alpha range), betas in any order."""
    f, y, w, keys, cl = make_problem(20, m=40, c=7, k=3, d=16, layout=layout)
    beta_grid = list(reversed(tf.search_grid(7, 30)))
    alpha_grid = [-0.5, 0., 0.7, 2.0, 1.1]
    counts = tf.tip_search_correct_counts(f, y, w, keys, cl, beta_grid, alpha_grid)
    assert torch.equal(counts, official_counts(f, y, w, keys, cl, beta_grid, alpha_grid))


@pytest.mark.parametrize('layout', ['grouped', 'shuffled', 'uneven'])
def test_search_anchor_spacing_does_not_change_counts(layout, monkeypatch):
    """Float32 CLIP-like data with many close classes, ImageNet grid: the counts are those of the dense
    computation whatever the spacing of the anchor betas (1 = an exp pass at every beta), and the default
    spacing really spares the exp passes (class_sum sees the whole [M, N] affinity at the anchors only)."""
    f, y, w, keys, cl = clip_like_problem(21, m=150, c=60, k=4, d=64, layout=layout)
    n = keys.shape[0]
    beta_grid, alpha_grid = tf.tip_search_grids([7, 3], [200, 20])
    reference = dense_counts(f, y, w, keys, cl, beta_grid, alpha_grid)
    assert reference.max() > reference.min() and reference.max() < 150
    widths = spy_class_sum(monkeypatch, dim=1)
    for spacing in (tf._ANCHOR_SPACING, 1, 3, 1000):
        monkeypatch.setattr(tf, '_ANCHOR_SPACING', spacing)
        widths.clear()
        counts = tf.tip_search_correct_counts(f, y, w, keys, cl, beta_grid, alpha_grid)
        assert torch.equal(counts, reference), spacing
        assert len(widths) == 200
        n_anchors = len(range(0, 200, spacing)) + (199 % spacing != 0)
        assert widths.count(n) == n_anchors


def test_search_clip_like_float32_matches_official_loop():
    """The official loop itself (float32, topk, one-hot matmul) on CLIP-like data with many candidates."""
    problem = clip_like_problem(22, m=60, c=30, k=4, d=32)
    counts, _ = assert_same_search(problem, [7, 3], [200, 20])
    assert counts.max() > counts.min()


# ---------------------------------------------------------------------------------------------------------
# grids
# ---------------------------------------------------------------------------------------------------------
def test_imagenet_grids():
    beta_grid, alpha_grid = tf.tip_search_grids([7, 3], [200, 20])
    assert beta_grid == official_grid(7, 200) and alpha_grid == official_grid(3, 20)
    assert len(beta_grid) == 200 and len(alpha_grid) == 20
    assert beta_grid[0] == 0.1 and alpha_grid[0] == 0.1
    assert beta_grid[-1] == pytest.approx(6.9655, abs=1e-12)
    assert alpha_grid[-1] == pytest.approx(2.855, abs=1e-12)
    assert all(b - a == pytest.approx(0.0345, abs=1e-12) for a, b in zip(beta_grid, beta_grid[1:]))
    assert all(b - a == pytest.approx(0.145, abs=1e-12) for a, b in zip(alpha_grid, alpha_grid[1:]))
    assert 7 not in beta_grid and 3 not in alpha_grid  # endpoint excluded
    assert all(isinstance(v, float) for v in beta_grid + alpha_grid)


@pytest.mark.parametrize('scale,beta_last,beta_step,alpha_last,alpha_step', [
    ([12, 5], 11.9405, 0.0595, 4.755, 0.245),     # caltech101
    ([12, 10], 11.9405, 0.0595, 9.505, 0.495),    # sun397, eurosat
    ([13, 13], 12.9355, 0.0645, 12.355, 0.645),   # dtd
    ([20, 10], 19.9005, 0.0995, 9.505, 0.495),    # stanford_cars
    ([30, 30], 29.8505, 0.1495, 28.505, 1.495),   # fgvc
    ([50, 50], 49.7505, 0.2495, 47.505, 2.495),   # oxford_flowers
])
def test_dataset_grids(scale, beta_last, beta_step, alpha_last, alpha_step):
    beta_grid, alpha_grid = tf.tip_search_grids(scale, [200, 20])
    assert beta_grid == official_grid(scale[0], 200) and alpha_grid == official_grid(scale[1], 20)
    assert beta_grid[-1] == pytest.approx(beta_last, abs=1e-9)
    assert beta_grid[1] - beta_grid[0] == pytest.approx(beta_step, abs=1e-9)
    assert alpha_grid[-1] == pytest.approx(alpha_last, abs=1e-9)
    assert alpha_grid[1] - alpha_grid[0] == pytest.approx(alpha_step, abs=1e-9)


def test_search_grid_small_and_default_steps():
    assert tf.search_grid(7, 1) == [0.1]
    assert tf.search_grid(1.1, 2) == official_grid(1.1, 2)
    default = tf.tip_search_grids([7, 3])
    assert (len(default[0]), len(default[1])) == (200, 20)


@pytest.mark.parametrize('steps', [0, -1, -20])
def test_search_grid_rejects_bad_steps(steps):
    with pytest.raises(ValueError):
        tf.search_grid(7, steps)
    with pytest.raises(ValueError):
        tf.tip_search_grids([7, 3], [steps, 20])
    with pytest.raises(ValueError):
        tf.tip_search_grids([7, 3], [200, steps])


@pytest.mark.parametrize('scale,step', [([7], [200, 20]), ([7, 3, 1], [200, 20]), ([7, 3], [200]),
                                        ([7, 3], [200, 20, 5]), ([], [])])
def test_tip_search_grids_rejects_bad_lengths(scale, step):
    with pytest.raises(ValueError):
        tf.tip_search_grids(scale, step)


# ---------------------------------------------------------------------------------------------------------
# text classifier and cache keys
# ---------------------------------------------------------------------------------------------------------
def test_text_classifier_matches_manual():
    gen = torch.Generator().manual_seed(14)
    c, t, d = 5, 7, 12
    scales = torch.rand(c, t, 1, generator=gen, dtype=DT) * 10 + 0.1  # templates of very different norms
    emb = torch.randn(c, t, d, generator=gen, dtype=DT) * scales
    out = tf.text_classifier(emb)
    expected = torch.stack([
        (lambda m: m / m.norm())(torch.stack([e / e.norm() for e in emb[i]]).mean(0)) for i in range(c)])
    assert out.shape == (c, d)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(c, dtype=DT))
    # normalising before averaging matters on this data
    raw_mean = F.normalize(emb.mean(1), dim=-1)
    assert not torch.allclose(out, raw_mean, atol=1e-3)


def test_text_classifier_single_template_is_normalised_embedding():
    emb = torch.randn(4, 1, 6, dtype=DT) * 3
    torch.testing.assert_close(tf.text_classifier(emb), emb[:, 0] / emb[:, 0].norm(dim=-1, keepdim=True))


@pytest.mark.parametrize('shape', [(5, 12), (12,), (2, 5, 7, 12)])
def test_text_classifier_rejects_bad_shapes(shape):
    with pytest.raises(ValueError):
        tf.text_classifier(torch.randn(*shape))


def test_cache_keys_from_views_is_mean_of_raw_features():
    # two views of one image: a large one along x, a small one along y
    views = torch.tensor([[[10., 0.]], [[0., 1.]]])  # [V=2, N=1, D=2]
    keys = tf.cache_keys_from_views(views)
    raw_then_norm = torch.tensor([[10., 1.]]) / math.sqrt(101.)
    norm_then_mean = torch.tensor([[1., 1.]]) / math.sqrt(2.)
    torch.testing.assert_close(keys, raw_then_norm)
    assert not torch.allclose(keys, norm_then_mean, atol=1e-2)


def test_cache_keys_from_views_random():
    gen = torch.Generator().manual_seed(15)
    views = torch.randn(10, 8, 16, generator=gen) * torch.rand(10, 8, 1, generator=gen) * 5
    keys = tf.cache_keys_from_views(views)
    mean = views.mean(0)
    torch.testing.assert_close(keys, mean / mean.norm(dim=-1, keepdim=True))
    torch.testing.assert_close(keys.norm(dim=-1), torch.ones(8))
    wrong = F.normalize(F.normalize(views, dim=-1).mean(0), dim=-1)
    assert not torch.allclose(keys, wrong, atol=1e-3)
    # fp16 features (as the official code stores them) give fp32 keys of the same value
    half = tf.cache_keys_from_views(views.half())
    assert half.dtype == torch.float32
    torch.testing.assert_close(half, keys, atol=2e-3, rtol=2e-3)


@pytest.mark.parametrize('shape', [(8, 16), (16,), (1, 2, 8, 16)])
def test_cache_keys_from_views_rejects_bad_shapes(shape):
    with pytest.raises(ValueError):
        tf.cache_keys_from_views(torch.randn(*shape))


# ---------------------------------------------------------------------------------------------------------
# accuracy
# ---------------------------------------------------------------------------------------------------------
def test_topk_accuracy_known_values():
    logits = torch.tensor([[0.9, 0.06, 0.04],
                           [0.1, 0.7, 0.2],
                           [0.35, 0.25, 0.4],
                           [0.5, 0.4, 0.1]])
    labels = torch.tensor([0, 2, 2, 1])
    assert tf.topk_accuracy(logits, labels) == 50.
    assert tf.topk_accuracy(logits, labels, topk=2) == 100.
    assert tf.topk_accuracy(logits, torch.tensor([1, 0, 1, 2]), topk=2) == 25.
    assert tf.topk_accuracy(logits, labels, topk=10) == 100.  # clamped to the number of classes


def test_topk_accuracy_matches_official_cls_acc():
    gen = torch.Generator().manual_seed(16)
    logits = torch.randn(200, 17, generator=gen, dtype=DT)
    labels = torch.randint(0, 17, (200,), generator=gen)
    for k in (1, 5):
        assert tf.topk_accuracy(logits, labels, k) == official_cls_acc(logits, labels, k)


def test_topk_accuracy_empty_raises():
    with pytest.raises(ValueError, match='empty'):
        tf.topk_accuracy(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long))
