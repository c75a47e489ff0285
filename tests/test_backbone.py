"""CLIPBackbone: model names, weight loading from files in open_clip's and OpenAI's formats, text encoding."""
import open_clip
import pytest
import torch

from tip_adapter_mm.models import CLIPBackbone, resolve_model_name


def _tiny_state(seed):
    from tip_adapter_mm.demo import register_tiny_clip
    torch.manual_seed(seed)
    return open_clip.create_model(register_tiny_clip()).state_dict()


def test_openai_names_map_to_quickgelu_variants():
    assert resolve_model_name('RN50', 'openai') == 'RN50-quickgelu'
    assert resolve_model_name('ViT-B/16', 'openai') == 'ViT-B-16-quickgelu'
    assert resolve_model_name('ViT-L/14', 'openai') == 'ViT-L-14-quickgelu'
    assert resolve_model_name('ViT-B-32', 'openai') == 'ViT-B-32-quickgelu'
    assert resolve_model_name('ViT-B-16', 'laion2b_s34b_b88k') == 'ViT-B-16'
    assert resolve_model_name('RN50-quickgelu', None) == 'RN50-quickgelu'


def test_unknown_model_name_lists_close_names():
    with pytest.raises(ValueError, match=r"unknown open_clip model name 'ViT-B-61'.*ViT-B-16"):
        resolve_model_name('ViT-B-61', 'openai')


def test_loads_open_clip_training_checkpoint(tmp_path):
    """open_clip's trainer saves {'epoch', 'name', 'state_dict'} with DDP's 'module.' prefix."""
    state = _tiny_state(3)
    path = tmp_path / 'epoch_7.pt'
    torch.save({'epoch': 7, 'name': 'tiny', 'state_dict': {'module.' + k: v for k, v in state.items()},
                'optimizer': {}}, path)
    backbone = CLIPBackbone('tiny-clip', pretrained=str(path))
    loaded = backbone.clip.state_dict()
    assert all(torch.equal(loaded[k], state[k]) for k in state)
    # frozen and excluded from the adapter's state dict
    assert not any(p.requires_grad for p in backbone.parameters())
    assert not any(k.startswith('clip.') for k in backbone.state_dict())


def test_loads_plain_state_dict_file(tmp_path):
    state = _tiny_state(4)
    path = tmp_path / 'weights.bin'
    torch.save(state, path)
    backbone = CLIPBackbone('tiny-clip', pretrained=str(path))
    assert torch.equal(backbone.clip.state_dict()['logit_scale'], state['logit_scale'])
    assert torch.equal(backbone.clip.visual.conv1.weight, state['visual.conv1.weight'])


def test_missing_local_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match='nothere.pt'):
        CLIPBackbone('tiny-clip', pretrained=str(tmp_path / 'nothere.pt'))


def test_missing_offline_weights_say_how_to_supply_a_file(monkeypatch, tmp_path):
    import huggingface_hub
    monkeypatch.setattr(huggingface_hub.constants, 'HF_HUB_OFFLINE', True)  # read at import time
    with pytest.raises(RuntimeError, match=r"could not obtain the 'openai' weights.*model.backbone.pretrained"):
        CLIPBackbone('RN50', pretrained='openai', cache_dir=str(tmp_path))


def test_forward_and_text_classifier(tmp_path):
    path = tmp_path / 'w.pt'
    torch.save(_tiny_state(5), path)
    backbone = CLIPBackbone('tiny-clip', pretrained=str(path))
    x = torch.randn(3, 3, 32, 32)
    (feats, ) = backbone(x)
    assert feats.shape == (3, backbone.feat_dim) and not torch.allclose(feats.norm(dim=1), torch.ones(3))
    assert torch.allclose(feats, backbone.clip.encode_image(x))  # raw, not normalised
    w = backbone.encode_text(['one', 'two_three'], ['a {}.', 'the {} digit.'])
    assert w.shape == (2, backbone.feat_dim)
    assert torch.allclose(w.norm(dim=1), torch.ones(2), atol=1e-6)
    tokens = backbone.tokenizer(['a two three.', 'the two three digit.'])
    emb = torch.nn.functional.normalize(backbone.clip.encode_text(tokens), dim=-1).mean(0)
    assert torch.allclose(w[1], emb / emb.norm(), atol=1e-6)  # '_' becomes a space


def test_train_mode_keeps_frozen_clip_in_eval(tmp_path):
    path = tmp_path / 'w.pt'
    torch.save(_tiny_state(6), path)
    backbone = CLIPBackbone('tiny-clip', pretrained=str(path)).train()
    assert backbone.training and not backbone.clip.training
    unfrozen = CLIPBackbone('tiny-clip', pretrained=str(path), freeze=False).train()
    assert unfrozen.clip.training and any(k.startswith('clip.') for k in unfrozen.state_dict())

