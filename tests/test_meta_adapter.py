"""Tests of Meta-Adapter: :func:`tip_adapter_mm.functional.meta_adapter_weights`, ``MetaAdapterHead`` and
``tools/convert_meta_adapter.py``.

``OfficialMetaAdapter`` below is the official ``MetaAdapter`` module (``ArsenalCheng/Meta-Adapter``,
``main.py``; see ``/work/shared/notes/meta_adapter.md`` §1) copied statement by statement: text token
concatenated to the keys and values, ``reshape``/``permute`` into one head, ``@`` attention scaled by the
float32 ``sqrt(dim)``, gate, ``.squeeze()``, residual and normalisation.
"""
import importlib.util
import pathlib
import sys

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = pathlib.Path(__file__).resolve().parents[1]

from tip_adapter_mm.functional import LOGIT_SCALE, l2_normalize, meta_adapter_logits, meta_adapter_weights  # noqa
from tip_adapter_mm.models.meta_adapter_head import MetaAdapterHead  # noqa: E402


def _load_tool():
    spec = importlib.util.spec_from_file_location('_convert_meta_adapter_under_test',
                                                  ROOT / 'tools' / 'convert_meta_adapter.py')
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


tool = _load_tool()


class OfficialMetaAdapter(nn.Module):
    """The official module, as in ``main.py`` (only the class name differs)."""

    def __init__(self, dim=1024, num_heads=1):
        super().__init__()
        self.dim = dim
        self.num_heads = num_heads
        self.q_proj = nn.Linear(dim, dim, bias=False)
        self.k_proj = nn.Linear(dim, dim, bias=False)
        self.alpha_proj = nn.Linear(dim, 1, bias=True)
        self._reset_parameters()

    def _reset_parameters(self):
        nn.init.xavier_uniform_(self.q_proj.weight)
        nn.init.xavier_uniform_(self.k_proj.weight)
        nn.init.xavier_uniform_(self.alpha_proj.weight)
        nn.init.constant_(self.alpha_proj.bias, 1)

    def forward(self, query, key, value):
        B, K, C = key.shape
        res = query

        query = query.reshape(B, 1, C)
        key = torch.cat([query, key], dim=1)
        value = torch.cat([query, value], dim=1)
        query = self.q_proj(query).reshape(B, self.num_heads, C)
        key = self.k_proj(key)

        query = query.reshape(B, self.num_heads, 1, -1).permute(0, 2, 1, 3)
        key = key.reshape(B, K + 1, 1, -1).permute(0, 2, 1, 3)
        value = value.reshape(B, K + 1, 1, -1).permute(0, 2, 1, 3)

        attn_weight = (query @ key.transpose(-1, -2)
                       / torch.sqrt(torch.tensor(self.dim, dtype=torch.float))).softmax(-1)
        attn = attn_weight @ value

        alpha = torch.nn.functional.sigmoid(self.alpha_proj(res).reshape(B, -1, 1, 1))
        attn = (alpha * attn).squeeze()

        attn = res + attn
        attn = F.normalize(attn, p=2, dim=-1)
        return attn


def _official(dim, dtype=torch.float32, sharpen=1., seed=0):
    """An official module with random weights; ``sharpen`` scales W_q, W_k and W_g so that the attention and
    the gate are far from their near-uniform initial values (a stricter comparison)."""
    torch.manual_seed(seed)
    m = OfficialMetaAdapter(dim).to(dtype)
    with torch.no_grad():
        for p in (m.q_proj.weight, m.k_proj.weight, m.alpha_proj.weight):
            p.mul_(sharpen)
        m.alpha_proj.bias.uniform_(-1., 2.)
    return m


def _params(m):
    return m.q_proj.weight, m.k_proj.weight, m.alpha_proj.weight, m.alpha_proj.bias


def _inputs(c, k, d, dtype=torch.float32, seed=1):
    g = torch.Generator().manual_seed(seed)
    w = l2_normalize(torch.randn(c, d, generator=g, dtype=dtype))
    # supports correlated with their class text, as CLIP image features are
    s = l2_normalize(torch.randn(c, k, d, generator=g, dtype=dtype) + 2. * w[:, None])
    return w, s


def _head(c=5, d=16, k=3, **kwargs):
    return MetaAdapterHead(num_classes=c, feat_dim=d, num_shots=k, **kwargs)


def _filled_head(c=5, d=16, k=3, seed=0, **kwargs):
    torch.manual_seed(seed)
    head = _head(c, d, k, **kwargs)
    w, s = _inputs(c, k, d, seed=seed + 1)
    head.set_support(w, s)
    return head


# ---------------------------------------------------------------- functional vs official


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('c,k,d', [(1, 1, 8), (1, 16, 64), (4, 1, 32), (7, 5, 512), (10, 16, 1024), (3, 0, 16)])
@pytest.mark.parametrize('sharpen', [1., 30.])
def test_weights_match_official(c, k, d, dtype, sharpen):
    m = _official(d, dtype, sharpen)
    w, s = _inputs(c, k, d, dtype)
    with torch.no_grad():
        ref = m(w, s, s)
        out = meta_adapter_weights(w, s, *_params(m))
    assert out.shape == ref.shape == (c, d) and out.dtype == dtype
    # float64: the official scale is a float32 sqrt(D) (exact for D = 1024, not for D = 512)
    assert (out - ref).abs().max().item() <= 1e-6
    assert torch.allclose(out.norm(dim=-1), torch.ones(c, dtype=dtype))


def test_gradients_match_official():
    m = _official(64, torch.float64, sharpen=10.)  # sqrt(64) is exact in the official float32 scale
    w, s = _inputs(6, 4, 64, torch.float64)
    f = l2_normalize(torch.randn(20, 64, dtype=torch.float64))
    y = torch.randint(0, 6, (20, ))
    F.cross_entropy(LOGIT_SCALE * f @ m(w, s, s).t(), y).backward()
    ref = [p.grad.clone() for p in _params(m)]
    m.zero_grad()
    F.cross_entropy(meta_adapter_logits(f, meta_adapter_weights(w, s, *_params(m))), y).backward()
    for r, p in zip(ref, _params(m)):
        assert torch.allclose(p.grad, r, atol=1e-10, rtol=1e-8)


def test_multi_head_matches_plain_split():
    d, h, c, k = 24, 3, 4, 5
    m = _official(d, torch.float64, sharpen=10.)
    w, s = _inputs(c, k, d, torch.float64)
    wq, wk, wg, bg = _params(m)
    e = d // h
    tokens = torch.cat([w[:, None], s], dim=1)
    q = (w @ wq.t()).view(c, h, e)
    keys = (tokens @ wk.t()).view(c, k + 1, h, e)
    a = (torch.einsum('che,cjhe->chj', q, keys) / e ** 0.5).softmax(-1)
    attended = torch.einsum('chj,cjhe->che', a, tokens.view(c, k + 1, h, e)).reshape(c, d)
    ref = F.normalize(w + torch.sigmoid(w @ wg.t() + bg) * attended, dim=-1)
    with torch.no_grad():
        out = meta_adapter_weights(w, s, wq, wk, wg, bg, num_heads=h)
        one = meta_adapter_weights(w, s, wq, wk, wg, bg, num_heads=1)
    assert (out - ref).abs().max().item() < 1e-12
    assert (one - m(w, s, s)).abs().max().item() < 1e-6


def test_weights_bad_shapes():
    m = _official(8)
    w, s = _inputs(3, 2, 8)
    with pytest.raises(ValueError, match=r'support of shape \(4, 2, 8\) does not fit text_weights of shape '
                                         r'\(3, 8\)'):
        meta_adapter_weights(w, torch.zeros(4, 2, 8), *_params(m))
    with pytest.raises(ValueError, match=r'support of shape \(3, 2, 6\)'):
        meta_adapter_weights(w, torch.zeros(3, 2, 6), *_params(m))
    with pytest.raises(ValueError, match=r'support must have shape \[C, K, D\], got \(6, 8\)'):
        meta_adapter_weights(w, torch.zeros(6, 8), *_params(m))
    wq, wk, wg, bg = _params(m)
    with pytest.raises(ValueError, match=r'k_weight of shape \(8, 4\) does not fit feature size D=8'):
        meta_adapter_weights(w, s, wq, wk[:, :4], wg, bg)
    with pytest.raises(ValueError, match='num_heads must be a positive divisor of the feature size D=8, got 3'):
        meta_adapter_weights(w, s, wq, wk, wg, bg, num_heads=3)


# ---------------------------------------------------------------- head


@pytest.mark.parametrize('d,expected', [(1024, 2_098_177), (512, 524_801), (768, 1_180_417)])
def test_parameter_count(d, expected):
    head = _head(c=2, d=d, k=1)
    assert sum(p.numel() for p in head.parameters()) == expected == 2 * d * d + d + 1
    assert sorted(n for n, _ in head.named_parameters()) == sorted(
        ['q_proj.weight', 'k_proj.weight', 'alpha_proj.weight', 'alpha_proj.bias'])
    assert set(head.state_dict()) == {'q_proj.weight', 'k_proj.weight', 'alpha_proj.weight', 'alpha_proj.bias',
                                      'clip_weights', 'support', 'cache_ready', 'base_mask'}


def test_build_from_registry():
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS
    init_default_scope('mmpretrain')
    head = MODELS.build(dict(type='MetaAdapterHead', num_classes=3, feat_dim=8, num_shots=2, topk=(1, )))
    assert isinstance(head, MetaAdapterHead) and not bool(head.cache_ready) and head.cache_size == 6


def test_init_as_official():
    torch.manual_seed(0)
    head = _head(c=200, d=512, k=4)
    assert head.alpha_proj.bias.item() == 1.
    bound = (6. / (512 + 512)) ** 0.5
    assert head.q_proj.weight.abs().max() <= bound and head.q_proj.weight.abs().max() > 0.95 * bound
    assert head.k_proj.weight.std().item() == pytest.approx(bound / 3 ** 0.5, rel=0.02)
    gbound = (6. / (512 + 1)) ** 0.5
    assert head.alpha_proj.weight.abs().max() <= gbound
    w, _ = _inputs(200, 4, 512)
    gate = torch.sigmoid(head.alpha_proj(w)).detach()
    assert gate.mean().item() == pytest.approx(torch.sigmoid(torch.tensor(1.)).item(), abs=0.005)  # 0.731
    assert gate.std().item() < 0.02


def test_logits_and_gradients():
    head = _filled_head(c=5, d=16, k=3)
    feats = torch.randn(7, 16)
    logits = head((feats, ))
    f = l2_normalize(feats)
    refined = meta_adapter_weights(head.clip_weights, head.support, *_params(head))
    assert torch.allclose(logits, 100. * f @ refined.t(), atol=1e-5)
    assert torch.equal(head.pre_logits((torch.zeros(7, 3), feats)), f)
    loss = head.loss((feats, ), [_sample(i % 5) for i in range(7)])['loss']
    loss.backward()
    for name, p in head.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def _sample(label):
    from mmpretrain.structures import DataSample
    return DataSample().set_gt_label(label)


def test_base_only_loss_is_the_softmax_over_the_base_classes():
    """loss_classes='base' changes the loss and its gradient: it is cross-entropy over the base classes only
    (novel classes are no distractors), computed here independently from the logits."""
    feats = torch.randn(6, 16, generator=torch.Generator().manual_seed(5))
    samples = [_sample(i % 3) for i in range(6)]  # queries of base classes 0, 1, 2
    grads, losses = {}, {}
    for mode in ('all', 'base'):
        head = _filled_head(c=5, d=16, k=3, base_classes=[0, 1, 2], loss_classes=mode)
        loss = head.loss((feats, ), samples)['loss']
        loss.backward()
        losses[mode], grads[mode] = loss.detach(), head.q_proj.weight.grad.clone()
        logits = head((feats, )).detach()
        target = torch.tensor([i % 3 for i in range(6)])
        expected = F.cross_entropy(logits[:, :3] if mode == 'base' else logits, target)
        assert torch.allclose(losses[mode], expected, atol=1e-5), mode
    assert losses['base'] < losses['all']  # the novel logits no longer compete
    assert not torch.allclose(grads['base'], grads['all'])
    with pytest.raises(ValueError, match='belongs to a novel class'):
        _filled_head(c=5, d=16, k=3, base_classes=[0, 1, 2], loss_classes='base').loss((feats, ), [_sample(4)])


def test_set_cache_stacks_by_label():
    c, k, d = 4, 3, 8
    head = _head(c, d, k)
    w, s = _inputs(c, k, d)
    keys, labels = s.reshape(c * k, d), torch.arange(c).repeat_interleave(k)
    perm = torch.randperm(c * k, generator=torch.Generator().manual_seed(3))
    head.set_cache(w, keys[perm], labels[perm])
    assert bool(head.cache_ready) and torch.equal(head.clip_weights, w)
    for cls in range(c):  # the same supports per class (the order within a class does not matter)
        got = {tuple(r.tolist()) for r in head.support[cls]}
        assert got == {tuple(r.tolist()) for r in s[cls]}
    ordered = _head(c, d, k)
    ordered.set_cache(w, keys, labels)  # grouped input: exactly the [C, K, D] reshape
    assert torch.equal(ordered.support, s)
    ordered.load_state_dict(head.state_dict(), strict=False)  # same parameters, compare logits
    f = l2_normalize(torch.randn(5, d))
    assert torch.allclose(ordered.logits(f), head.logits(f), atol=1e-5)


def test_set_cache_errors():
    c, k, d = 4, 3, 8
    head = _head(c, d, k)
    w, s = _inputs(c, k, d)
    keys, labels = s.reshape(c * k, d), torch.arange(c).repeat_interleave(k)
    bad = labels.clone()
    bad[0] = 2  # class 0 has 2 entries, class 2 has 4
    with pytest.raises(ValueError, match='class 0 has 2 cache entries but the head expects exactly num_shots=3'):
        head.set_cache(w, keys, bad)
    with pytest.raises(ValueError, match=r'cache_keys of shape \(10, 8\) does not fit the head, which expects '
                                         r'\(12, 8\)'):
        head.set_cache(w, keys[:10], labels[:10])
    with pytest.raises(ValueError, match=r'clip_weights of shape \(5, 8\) does not fit the head, which expects '
                                         r'\(4, 8\)'):
        head.set_cache(torch.zeros(5, 8), keys, labels)
    with pytest.raises(ValueError, match=r'cache labels must lie in \[0, 4\), got \[0, 4\]'):
        head.set_cache(w, keys, torch.where(labels == 3, 4, labels))
    with pytest.raises(ValueError, match=r'support of shape \(3, 3, 8\) does not fit the head, which expects '
                                         r'\(4, 3, 8\)'):
        head.set_support(w, s[:3])  # wrong number of classes
    with pytest.raises(ValueError, match=r'support of shape \(4, 2, 8\) does not fit the head, which expects '
                                         r'\(4, 3, 8\).*num_shots=3'):
        head.set_support(w, s[:, :2])  # K mismatch
    assert not bool(head.cache_ready)


def test_zero_shots_is_zero_shot_clip():
    head = _head(c=3, d=8, k=0)
    w, _ = _inputs(3, 0, 8)
    head.set_cache(w)
    f = l2_normalize(torch.randn(4, 8))
    assert torch.allclose(head.logits(f), 100. * f @ w.t(), atol=1e-5)


def test_state_dict_round_trip(tmp_path):
    head = _filled_head(c=5, d=16, k=3, seed=4)
    path = tmp_path / 'head.pth'
    torch.save(head.state_dict(), path)
    torch.manual_seed(99)
    other = _head(c=5, d=16, k=3)
    assert not bool(other.cache_ready)
    other.load_state_dict(torch.load(path, weights_only=True))
    assert bool(other.cache_ready)
    f = l2_normalize(torch.randn(6, 16))
    assert torch.equal(other.logits(f), head.logits(f))


def test_official_file_through_converter(tmp_path):
    d, c, k = 64, 6, 4
    m = _official(d, sharpen=10.).half()
    src = tmp_path / 'best_meta_16shots.pt'
    torch.save({'module.' + name: v for name, v in m.state_dict().items()}, src)  # DataParallel prefix
    dst = tmp_path / 'converted.pth'
    tool.main([str(src), str(dst), '--feat-dim', str(d)])
    ckpt = torch.load(dst, weights_only=True)
    assert set(ckpt['state_dict']) == {'head.q_proj.weight', 'head.k_proj.weight', 'head.alpha_proj.weight',
                                       'head.alpha_proj.bias'}
    assert all(v.dtype == torch.float32 for v in ckpt['state_dict'].values())
    assert ckpt['meta']['feat_dim'] == d and ckpt['meta']['num_params'] == 2 * d * d + d + 1

    # load as mmengine's load_from does (non-strict, 'head.' prefix from the classifier)
    from mmengine.runner.checkpoint import load_state_dict
    model = nn.Module()
    model.head = _head(c, d, k)
    load_state_dict(model, ckpt['state_dict'], strict=True)  # the missing cache buffers are not an error
    assert not bool(model.head.cache_ready)  # the cache hook will build the cache
    w, s = _inputs(c, k, d)
    model.head.set_support(w, s)
    official = m.float()  # the fp16 file's values, in fp32 like the converted checkpoint
    with torch.no_grad():
        ref = official(w, s, s)
        out = model.head.refined_weights()
    assert (out - ref).abs().max().item() <= 1e-6


def test_converter_errors(tmp_path):
    m = _official(32)
    good = m.state_dict()
    cases = {
        'missing': ({k: v for k, v in good.items() if k != 'alpha_proj.bias'},
                    r"lacks the Meta-Adapter parameters \['alpha_proj.bias'\]"),
        'extra': ({**good, 'v_proj.weight': torch.zeros(32, 32)}, r"has keys \['v_proj.weight'\] that are not"),
        'nonsquare': ({**good, 'q_proj.weight': torch.zeros(32, 16)},
                      r'q_proj.weight has shape \(32, 16\), expected a square'),
        'k_mismatch': ({**good, 'k_proj.weight': torch.zeros(16, 16)},
                       r'k_proj.weight has shape \(16, 16\) but q_proj.weight is \(32, 32\)'),
    }
    for name, (state, message) in cases.items():
        src = tmp_path / f'{name}.pt'
        torch.save(state, src)
        with pytest.raises(ValueError, match=f"'{src}'.*" + message):
            tool.convert(str(src), str(tmp_path / 'out.pth'))
    src = tmp_path / 'rn50.pt'
    torch.save(_official(64).state_dict(), src)
    with pytest.raises(ValueError, match=f"'{src}' holds a Meta-Adapter for feature size 64 but --feat-dim is 32"):
        tool.main([str(src), str(tmp_path / 'out.pth'), '--feat-dim', '32'])
    with pytest.raises(FileNotFoundError, match='does not exist'):
        tool.convert(str(tmp_path / 'nope.pt'), str(tmp_path / 'out.pth'))
    assert not (tmp_path / 'out.pth').exists()


def test_converter_strips_project_checkpoint(tmp_path):
    head = _filled_head(c=5, d=16, k=3)
    src = tmp_path / 'epoch_5.pth'
    torch.save({'meta': {'seed': 1}, 'state_dict': {'backbone.x': torch.zeros(2),
                                                    **{'head.' + k: v for k, v in head.state_dict().items()}}},
               src)
    ckpt = tool.convert(str(src), str(tmp_path / 'adapter.pth'))
    assert set(ckpt['state_dict']) == {'head.' + k for k in
                                       ('q_proj.weight', 'k_proj.weight', 'alpha_proj.weight', 'alpha_proj.bias')}
    other = _head(c=5, d=16, k=1)  # another shot count: loads once the cache is stripped
    other.load_state_dict({k[5:]: v for k, v in ckpt['state_dict'].items()}, strict=False)
    assert torch.equal(other.q_proj.weight, head.q_proj.weight)


def test_load_other_feature_size_errors():
    rn50 = _official(64).state_dict()  # e.g. the official RN50 file (D=1024) into a ViT-B/16 config (D=512)
    head = _head(c=3, d=32, k=2)
    with pytest.raises(ValueError, match=r'checkpoint q_proj.weight has shape \(64, 64\) but the config builds '
                                         r'\(32, 32\) \(feat_dim=32\)'):
        head.load_state_dict(rn50, strict=False)
    other = _filled_head(c=3, d=64, k=2).state_dict()
    other.update({k: v[:, :32] if v.dim() == 2 else v for k, v in _official(32).state_dict().items()})
    with pytest.raises(ValueError, match=r'checkpoint clip_weights has shape \(3, 64\) but the config builds '
                                         r'\(3, 32\) \(feat_dim=32\)'):
        head.load_state_dict(other, strict=False)


def test_load_other_shot_count_errors():
    ckpt = _filled_head(c=5, d=16, k=3).state_dict()
    head = _head(c=5, d=16, k=4)
    with pytest.raises(ValueError, match=r'checkpoint support has shape \(5, 3, 16\) but the config builds '
                                         r'\(5, 4, 16\) \(num_classes=5, num_shots=4'):
        head.load_state_dict(ckpt)


def test_load_other_classes_is_transfer():
    source = _filled_head(c=5, d=16, k=3, seed=2)  # adapter trained on a 5-class dataset
    target = _head(c=8, d=16, k=2)  # applied to an 8-class dataset, 2 shots
    target.load_state_dict(source.state_dict())  # strict: the skipped buffers are neither missing nor extra
    assert not bool(target.cache_ready) and target.support.shape == (8, 2, 16)
    for name in ('q_proj.weight', 'k_proj.weight', 'alpha_proj.weight', 'alpha_proj.bias'):
        assert torch.equal(target.state_dict()[name], source.state_dict()[name])
    # a target head whose cache was already built keeps it
    w, s = _inputs(8, 2, 16)
    target.set_support(w, s)
    target.load_state_dict(source.state_dict())
    assert bool(target.cache_ready) and torch.equal(target.support, s)


def test_load_partial_state_is_an_error():
    """A partial head state never loads silently: a partial cache, a missing adapter parameter, or the state
    of another method's head (a Tip-Adapter cache) is an error that says what is missing."""
    ckpt = _filled_head(c=5, d=16, k=3).state_dict()
    partial = dict(ckpt)
    del partial['support']
    head = _head(c=5, d=16, k=3)
    with pytest.raises(ValueError, match=r"cache buffers \['clip_weights', 'cache_ready'\]"):
        head.load_state_dict(partial, strict=False)
    assert not bool(head.cache_ready)
    no_adapter = {k: v for k, v in ckpt.items() if not k.startswith('q_proj')}
    with pytest.raises(ValueError, match=r"missing adapter parameters \['q_proj.weight'\]"):
        _head(c=5, d=16, k=3).load_state_dict(no_adapter, strict=False)
    from tip_adapter_mm.models import CacheHead
    tip = CacheHead(num_classes=5, feat_dim=16, num_shots=3).state_dict()
    with pytest.raises(ValueError, match=r'not a MetaAdapterHead.*Tip-Adapter checkpoint'):
        _head(c=5, d=16, k=3).load_state_dict(tip, strict=False)
    with pytest.raises(ValueError, match=r"not a CacheHead's: missing \['alpha', 'beta', 'cache_keys', "
                                         r"'cache_labels'\].*Meta-Adapter checkpoint"):
        CacheHead(num_classes=5, feat_dim=16, num_shots=3).load_state_dict(ckpt, strict=False)


def test_accuracy_restricted_to_the_classes_of_a_subset():
    from tip_adapter_mm.evaluation import BaseNovelAccuracy
    scores = torch.tensor([[0.1, 0.5, 0.3, 0.1], [0.6, 0.1, 0.2, 0.1], [0.2, 0.2, 0.1, 0.5]])
    labels = [2, 2, 3]
    samples = [dict(pred_score=s, gt_label=torch.tensor([y])) for s, y in zip(scores, labels)]
    full = BaseNovelAccuracy(topk=(1, ))
    full.process(None, samples)
    assert full.compute_metrics(full.results)['accuracy/top1'] == pytest.approx(100 / 3)
    subset = BaseNovelAccuracy(topk=(1, ), restrict_to_subset=True)
    subset.dataset_meta = dict(subset_classes=(2, 3))
    subset.process(None, samples)
    assert subset.compute_metrics(subset.results)['accuracy/top1'] == pytest.approx(100.)
    base = BaseNovelAccuracy(base_classes=[2], topk=(1, ))
    base.process(None, samples)
    metrics = base.compute_metrics(base.results)
    assert metrics['base/top1'] == pytest.approx(0.) and metrics['novel/top1'] == pytest.approx(100.)


def test_refined_weights_are_reused_without_gradients_until_an_input_changes():
    import torch.nn.functional as F
    from tip_adapter_mm.functional import meta_adapter_weights
    from tip_adapter_mm.models import MetaAdapterHead
    torch.manual_seed(0)
    head = MetaAdapterHead(num_classes=5, feat_dim=8, num_shots=2)
    head.set_support(F.normalize(torch.randn(5, 8), dim=1), F.normalize(torch.randn(5, 2, 8), dim=2))

    def fresh():
        return meta_adapter_weights(head.clip_weights, head.support, head.q_proj.weight, head.k_proj.weight,
                                    head.alpha_proj.weight, head.alpha_proj.bias, head.num_heads)

    with torch.no_grad():
        first = head.refined_weights()
        assert head.refined_weights() is first  # reused
        for change in (lambda: head.q_proj.weight.add_(0.1), lambda: head.alpha_proj.bias.fill_(-1.),
                       lambda: head.set_support(F.normalize(torch.randn(5, 8), dim=1),
                                                F.normalize(torch.randn(5, 2, 8), dim=2)),
                       lambda: head.load_state_dict(MetaAdapterHead(5, 8, 2).state_dict(), strict=False)):
            change()
            assert torch.equal(head.refined_weights(), fresh())
    assert head.refined_weights().requires_grad  # with gradients: always computed, differentiable
