"""A backbone's preprocessing and feature size from open_clip's registries, and how they reach a config."""
import os.path as osp

import pytest
from mmengine.config import Config

from conftest import ROOT
from tip_adapter_mm.engine.runner import resolve_config
from tip_adapter_mm.models.clip_preprocess import clip_preprocess
from tip_adapter_mm.settings import apply_backbone, check_backbone

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)  # CLIP's paper / clip.load's Normalize
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


@pytest.mark.parametrize('name,tag,resolved,size,dim,mean', [
    ('RN50', 'openai', 'RN50-quickgelu', 224, 1024, OPENAI_MEAN),
    ('ViT-B-16', 'openai', 'ViT-B-16-quickgelu', 224, 512, OPENAI_MEAN),
    ('ViT-B/16', 'openai', 'ViT-B-16-quickgelu', 224, 512, OPENAI_MEAN),  # OpenAI's name
    ('ViT-L/14@336px', 'openai', 'ViT-L-14-336-quickgelu', 336, 768, OPENAI_MEAN),
    ('RN50x4', 'openai', 'RN50x4-quickgelu', 288, 640, OPENAI_MEAN),
    ('ViT-B-16', 'laion2b_s34b_b88k', 'ViT-B-16', 224, 512, OPENAI_MEAN),
    ('ViT-L-14', 'laion2b_s32b_b82k', 'ViT-L-14', 224, 768, (0.5, 0.5, 0.5)),  # LAION's own normalisation
    ('RN50', None, 'RN50', 224, 1024, OPENAI_MEAN),  # random weights: the model config and open_clip's defaults
])
def test_properties_from_open_clip(name, tag, resolved, size, dim, mean):
    p = clip_preprocess(name, tag)
    assert (p.model_name, p.image_size, p.feat_dim, p.mean) == (resolved, size, dim, mean)
    assert p.interpolation == 'bicubic' and p.resize_mode == 'shortest'
    assert p.std == (OPENAI_STD if mean == OPENAI_MEAN else (0.5, 0.5, 0.5))


def test_local_file_and_tiny_clip_use_the_model_config():
    p = clip_preprocess('tiny-clip', 'data/tiny_clip/tiny_clip.pt')  # registered with open_clip on demand
    assert (p.model_name, p.image_size, p.feat_dim, p.mean) == ('tiny-clip', 32, 64, OPENAI_MEAN)


def test_unknown_names_and_tags_are_clear_errors():
    with pytest.raises(ValueError, match="unknown open_clip model name 'ViT-B-61'"):
        clip_preprocess('ViT-B-61', 'openai')
    with pytest.raises(ValueError, match=r"pretrained='laion9' is not an open_clip tag of model 'ViT-B-16'.*"
                                         r"laion2b_s34b_b88k"):
        clip_preprocess('ViT-B-16', 'laion9')


def _cfg(name, *options):
    from tip_adapter_mm.launch import merge_train_args, parse_train_args
    args = parse_train_args([osp.join(ROOT, 'configs', name), *(['--cfg-options', *options] if options else [])])
    return resolve_config(merge_train_args(Config.fromfile(args.config), args))


def _pipelines(cfg):
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        yield key, cfg[key].dataset.pipeline


def test_the_default_base_holds_rn50_openai_values():
    """configs/_base_/models/clip_rn50.py + fewshot_224.py hold what open_clip gives for RN50 + openai."""
    cfg = Config.fromfile(osp.join(ROOT, 'configs', 'tip_dtd_16shot.py'))
    check_backbone(cfg, None, clip_preprocess)
    assert apply_backbone(cfg, None, clip_preprocess) == []


def test_a_backbone_override_changes_every_place():
    cfg = _cfg('tip_f_dtd_16shot.py', 'model.backbone.model_name=ViT-L-14',
               'model.backbone.pretrained=laion2b_s32b_b82k')
    assert cfg.model.head.feat_dim == 768
    assert cfg.model.data_preprocessor.mean == pytest.approx([127.5] * 3)
    assert cfg.model.data_preprocessor.std == pytest.approx([127.5] * 3)
    cfg = _cfg('tip_dtd_16shot.py', 'model.backbone.model_name=ViT-L/14@336px')
    assert cfg.model.head.feat_dim == 768
    for key, pipeline in _pipelines(cfg):
        sizes = {t.type: t.get('scale', t.get('crop_size')) for t in pipeline if t.type != 'LoadImageRGB'
                 and t.type not in ('RandomFlip', 'PackInputs')}
        assert set(sizes.values()) == {336}, (key, sizes)
    # the file's RN50 is unchanged
    plain = _cfg('tip_dtd_16shot.py')
    assert plain.model.head.feat_dim == 1024 and plain.test_dataloader.dataset.pipeline[1].scale == 224


def test_an_explicit_value_wins():
    cfg = _cfg('tip_dtd_16shot.py', 'model.backbone.model_name=RN50x4', 'model.head.feat_dim=640',
               'model.data_preprocessor.mean=[1,2,3]')
    assert cfg.model.data_preprocessor.mean == [1, 2, 3]  # the user's normalisation
    assert cfg.test_dataloader.dataset.pipeline[2].crop_size == 288  # the rest from RN50x4
    # the official Meta-Adapter ImageNet test resize is bilinear: a choice of the file, kept on a switch
    cfg = _cfg('meta_adapter_imagenet_16shot_official.py', 'model.backbone.model_name=ViT-L-14-336')
    resize = cfg.test_dataloader.dataset.pipeline[1]
    assert (resize.interpolation, resize.scale) == ('bilinear', 336)
    assert cfg.train_dataloader.dataset.pipeline[1].interpolation == 'bicubic'
    # but a head of another size than the embedding never fits: an error before anything runs
    cfg = _cfg('tip_dtd_16shot.py', 'model.head.feat_dim=999')
    with pytest.raises(ValueError, match=r"model.backbone 'RN50' \(openai\) needs model\.head\.feat_dim=1024 "
                                         r'\(it holds 999\)'):
        check_backbone(cfg, None, clip_preprocess)
    # 'auto' is filled
    cfg = Config.fromfile(osp.join(ROOT, 'configs', 'tip_dtd_16shot.py'))
    cfg.model.backbone.model_name = 'RN50x4'
    cfg.model.head.feat_dim = 'auto'
    filled = apply_backbone(cfg, None, clip_preprocess)
    assert 'model.head.feat_dim' in filled and cfg.model.head.feat_dim == 640
    # and so are the values inherited from the RN50 base files (288 px for RN50x4)
    assert 'test_dataloader.dataset.pipeline.2.crop_size' in filled
    assert cfg.test_dataloader.dataset.pipeline[2].crop_size == 288


def test_a_mismatch_under_a_plain_runner_is_an_error():
    """What RunCheckHook checks under Runner.from_cfg: the backbone switched without its values."""
    path = osp.join(ROOT, 'configs', 'tip_dtd_16shot.py')
    cfg = Config.fromfile(path)
    cfg.merge_from_dict({'model.backbone.model_name': 'ViT-L-14-336'})
    original = Config.fromfile(path)
    with pytest.raises(ValueError, match=r"model.backbone 'ViT-L-14-336' \(openai\) needs "
                                         r'train_dataloader\.dataset\.pipeline\.1\.scale=336 \(it holds 224\).*'
                                         r'model\.head\.feat_dim=768 \(it holds 1024\)'):
        check_backbone(cfg, original, clip_preprocess, path)
    from tip_adapter_mm.engine.hooks.run_check_hook import RunCheckHook
    with pytest.raises(ValueError, match='feat_dim=768'):
        RunCheckHook._check_backbone(cfg)
    apply_backbone(cfg, original, clip_preprocess)  # what the project's runner does
    RunCheckHook._check_backbone(cfg)


def test_a_child_config_that_switches_the_backbone_gets_its_values(tmp_path):
    """A user's config file inheriting a method config and setting only model.backbone: the inherited RN50
    values are the backbone's, filled by the project's runner and an error naming them under a plain runner."""
    child = tmp_path / 'tip_dtd_vit_l14_336.py'
    child.write_text(f"_base_ = ['{osp.join(ROOT, 'configs', 'tip_dtd_16shot.py')}']\n"
                     "model = dict(backbone=dict(model_name='ViT-L-14-336'))\n")
    cfg = Config.fromfile(str(child))
    with pytest.raises(ValueError, match=r'pipeline\.1\.scale=336 \(it holds 224\).*feat_dim=768'):
        check_backbone(cfg, Config.fromfile(str(child)), clip_preprocess, str(child))
    resolved = resolve_config(Config.fromfile(str(child)))
    assert resolved.model.head.feat_dim == 768
    assert {t.get('scale', t.get('crop_size')) for _, pipeline in _pipelines(resolved) for t in pipeline
            if t.type in ('RandomResizedCrop', 'ResizeEdge', 'CenterCrop')} == {336}


def test_backbone_module_exposes_the_same_values():
    import torch

    from tip_adapter_mm.models import CLIPBackbone
    torch.manual_seed(0)
    backbone = CLIPBackbone('tiny-clip', pretrained=None)
    p = clip_preprocess('tiny-clip', None)
    assert (backbone.feat_dim, backbone.image_size, backbone.mean, backbone.std, backbone.interpolation) == \
        (p.feat_dim, p.image_size, p.mean, p.std, p.interpolation)
    out, = backbone(torch.zeros(2, 3, backbone.image_size, backbone.image_size))
    assert out.shape == (2, p.feat_dim)


@pytest.mark.slow
@pytest.mark.parametrize('name', ['RN50', 'ViT-B-16'])
def test_random_weight_models_agree(name):
    import torch

    from tip_adapter_mm.models import CLIPBackbone
    backbone = CLIPBackbone(name, pretrained=None)
    p = clip_preprocess(name, None)
    assert backbone.feat_dim == p.feat_dim and backbone.image_size == p.image_size
    assert tuple(backbone.clip.visual.image_size if isinstance(backbone.clip.visual.image_size, tuple)
                 else (backbone.clip.visual.image_size, ) * 2) == (p.image_size, ) * 2
    with torch.no_grad():
        out, = backbone(torch.zeros(1, 3, p.image_size, p.image_size))
    assert out.shape == (1, p.feat_dim)
