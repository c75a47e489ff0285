"""CLIPBackbone smoke test on real-size open_clip models (RN50, ViT-B/16) with random weights.

No weights are downloaded (``pretrained=None``); each model is built once per module.
"""
import open_clip
import pytest
import torch
from torch import nn

from tip_adapter_mm.models import CLIPBackbone

pytestmark = pytest.mark.slow

#: OpenAI name -> (open_clip name with pretrained=None, embedding dimension)
MODELS = {'RN50': ('RN50', 1024), 'ViT-B/16': ('ViT-B-16', 512)}

CLASSNAMES = ['golden_retriever', 'tabby cat', 'airliner']
TEMPLATES = ['a photo of a {}.', 'a blurry photo of a {}.']


@pytest.fixture(scope='module', params=list(MODELS))
def backbone(request):
    torch.manual_seed(0)
    return request.param, CLIPBackbone(model_name=request.param, pretrained=None)


def _images(n=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 224, 224, generator=g)


def _batchnorms(module):
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def test_model_name_and_feat_dim(backbone):
    name, bb = backbone
    expected_name, dim = MODELS[name]
    # pretrained=None: OpenAI name mapped, no -quickgelu variant
    assert bb.model_name == expected_name
    assert bb.feat_dim == dim
    assert open_clip.get_model_config(bb.model_name)['embed_dim'] == dim


def test_forward_shape(backbone):
    name, bb = backbone
    dim = MODELS[name][1]
    bb.eval()
    with torch.no_grad():
        out = bb(_images())
    assert isinstance(out, tuple)
    feats = out[0]
    assert feats.shape == (2, dim)
    assert feats.dtype == torch.float32
    assert torch.isfinite(feats).all()


def test_encode_text_classifier(backbone):
    name, bb = backbone
    dim = MODELS[name][1]
    weights = bb.encode_text(CLASSNAMES, TEMPLATES)
    # [C, D], rows of unit norm (see functional.text_classifier)
    assert weights.shape == (len(CLASSNAMES), dim)
    assert torch.isfinite(weights).all()
    torch.testing.assert_close(weights.norm(dim=-1), torch.ones(len(CLASSNAMES)), atol=1e-5, rtol=0)


def test_clip_is_frozen(backbone):
    _, bb = backbone
    assert not any(p.requires_grad for p in bb.parameters())
    assert not any(p.requires_grad for p in bb.clip.parameters())


def test_train_mode_keeps_clip_in_eval_and_bn_stats_fixed(backbone):
    name, bb = backbone
    bns = _batchnorms(bb.clip)
    if name == 'RN50':
        assert bns, 'RN50 is expected to contain BatchNorm layers'
    try:
        bb.train()
        assert bb.training
        assert not bb.clip.training
        assert not any(m.training for m in bb.clip.modules())
        assert not any(bn.training for bn in bns)
        before = [(bn.running_mean.clone(), bn.running_var.clone()) for bn in bns]
        out = bb(_images(seed=2))[0]
        assert not out.requires_grad
        for bn, (mean, var) in zip(bns, before):
            assert torch.equal(bn.running_mean, mean)
            assert torch.equal(bn.running_var, var)
    finally:
        bb.eval()


def test_state_dict_has_no_clip_keys(backbone):
    _, bb = backbone
    assert not any(k.startswith('clip.') for k in bb.state_dict())
    # also when nested in a model (the hook honours the prefix)
    wrapper = nn.ModuleDict({'backbone': bb})
    assert not any('clip.' in k for k in wrapper.state_dict())


def test_init_weights_keeps_clip_parameters(backbone):
    _, bb = backbone
    params = list(bb.clip.named_parameters())
    picked = dict(params[:3] + params[len(params) // 2:len(params) // 2 + 2] + params[-3:])
    before = {k: v.detach().clone() for k, v in picked.items()}
    buffers_before = {k: v.clone() for k, v in bb.clip.named_buffers()}
    bb.init_weights()
    after = dict(bb.clip.named_parameters())
    for k, v in before.items():
        assert torch.equal(after[k], v), k
    for k, v in bb.clip.named_buffers():
        assert torch.equal(v, buffers_before[k]), k
