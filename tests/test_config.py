"""Config inheritance and the tools' argument handling (no model is built)."""
import os.path as osp

import pytest
from mmengine.config import Config

from conftest import ROOT
from tip_adapter_mm.launch import merge_common_args, parse_train_args


def _cfg(name, *options):
    args = parse_train_args([osp.join(ROOT, 'configs', name), *(['--cfg-options', *options] if options else [])])
    return merge_common_args(Config.fromfile(args.config), args)


def test_tip_imagenet_config_has_official_settings():
    cfg = _cfg('tip_imagenet_16shot.py')
    assert cfg.default_scope == 'mmpretrain' and cfg.custom_imports.imports == ['tip_adapter_mm']
    assert cfg.model.backbone == dict(type='CLIPBackbone', model_name='RN50', pretrained='openai')
    head = cfg.model.head
    assert (head.type, head.num_classes, head.feat_dim, head.num_shots) == ('CacheHead', 1000, 1024, 16)
    assert (head.alpha, head.beta) == (1.17, 1.)
    assert cfg.train_cfg.type == 'TrainingFreeLoop'
    assert cfg.train_cfg.search_scale == [7, 3] and cfg.train_cfg.search_step == [200, 20]
    ds = cfg.train_dataloader.dataset
    assert (ds.type, ds.data_root, ds.classnames, ds.templates) == \
        ('FewShotImageFolder', 'data/imagenet', 'imagenet', 'imagenet')
    # the test split is ILSVRC val; the validation split is held out of train
    assert cfg.test_dataloader.dataset.split_dirs == dict(train='train', val=None, test='val')
    assert cfg.val_dataloader.dataset.split == 'val'
    assert [h.type for h in cfg.custom_hooks] == ['BuildCacheHook', 'ResultsHook']
    assert cfg.custom_hooks[0].augment_epochs == 10
    assert cfg.work_dir == './work_dirs/tip_imagenet_16shot'


def test_zeroshot_inherits_tip_and_drops_the_cache():
    cfg = _cfg('zeroshot_imagenet.py')
    assert cfg.method == 'Zero-shot CLIP'
    assert cfg.model.head.num_shots == 0 and cfg.model.head.alpha == 0.
    assert cfg.train_dataloader.dataset.num_shots == 0
    assert cfg.train_cfg.search is False
    # everything else is inherited
    assert cfg.model.backbone.model_name == 'RN50' and cfg.model.head.num_classes == 1000
    assert cfg.test_dataloader.dataset.data_root == 'data/imagenet'


def test_num_shots_and_seed_flow_into_head_and_datasets():
    cfg = _cfg('tip_imagenet_16shot.py', 'num_shots=4', 'fewshot_seed=3',
               'model.backbone.model_name=ViT-B/16')
    assert cfg.model.head.num_shots == 4
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        assert cfg[key].dataset.num_shots == 4 and cfg[key].dataset.seed == 3
    assert cfg.model.backbone.model_name == 'ViT-B/16'
    # num_workers > 0 keeps workers alive between epochs; 0 workers must not ask for it (it would crash)
    assert cfg.train_dataloader.persistent_workers is True
    assert _cfg('tip_digits_16shot.py').train_dataloader.persistent_workers is False
    assert _cfg('tip_imagenet_16shot.py', 'train_dataloader.num_workers=0').train_dataloader.persistent_workers is False
    assert _cfg('tip_f_imagenet_16shot.py').train_dataloader.num_workers == 0  # the feature bank is in memory


@pytest.mark.parametrize('base,name,dim', [('clip_rn50', 'RN50', 1024), ('clip_rn101', 'RN101', 512),
                                           ('clip_vit_b32', 'ViT-B/32', 512), ('clip_vit_b16', 'ViT-B/16', 512),
                                           ('clip_vit_l14', 'ViT-L/14', 768)])
def test_model_bases_match_open_clip(base, name, dim):
    import open_clip

    from tip_adapter_mm.models import resolve_model_name
    cfg = Config.fromfile(osp.join(ROOT, 'configs/_base_/models', base + '.py'))
    assert cfg.model.backbone.model_name == name and cfg.model.head.feat_dim == dim
    resolved = resolve_model_name(name, 'openai')
    assert resolved.endswith('-quickgelu')
    assert open_clip.get_model_config(resolved)['embed_dim'] == dim


def test_backbone_switch_by_inheriting_another_model_base(tmp_path):
    """A method x dataset config is models + datasets + schedules + runtime: swap the models file."""
    cfg_file = tmp_path / 'tip_caltech101_vit_b16.py'
    bases = [f"'{ROOT}/configs/_base_/{name}.py'" for name in (
        'models/clip_vit_b16', 'datasets/caltech101_fewshot', 'schedules/training_free', 'default_runtime')]
    cfg_file.write_text(f"_base_ = [{', '.join(bases)}]\nmethod = 'Tip-Adapter'\n")
    args = parse_train_args([str(cfg_file)])
    cfg = merge_common_args(Config.fromfile(args.config), args)
    reference = _cfg('tip_caltech101_16shot.py')
    assert cfg.model.backbone.model_name == 'ViT-B/16' and cfg.model.head.feat_dim == 512
    assert reference.model.backbone.model_name == 'RN50' and reference.model.head.feat_dim == 1024
    for key in ('num_classes', 'alpha', 'beta'):  # the dataset's settings are unchanged
        assert cfg.model.head[key] == reference.model.head[key]
    assert cfg.train_cfg == reference.train_cfg and cfg.test_dataloader == reference.test_dataloader

DATASETS = ['imagenet', 'caltech101', 'oxford_pets', 'stanford_cars', 'oxford_flowers', 'food101',
            'fgvc_aircraft', 'sun397', 'dtd', 'eurosat', 'ucf101']


@pytest.mark.parametrize('dataset', DATASETS)
def test_every_method_has_a_config_for_every_dataset(dataset):
    from tip_adapter_mm.datasets.dataset_settings import COOP_DATASETS
    settings = COOP_DATASETS[dataset]
    tip = _cfg(f'tip_{dataset}_16shot.py')
    zs = _cfg(f'zeroshot_{dataset}.py')
    tipf = _cfg(f'tip_f_{dataset}_16shot.py')
    meta = _cfg(f'meta_adapter_{dataset}_16shot.py')
    assert (tip.method, zs.method, tipf.method, meta.method) == \
        ('Tip-Adapter', 'Zero-shot CLIP', 'Tip-Adapter-F', 'Meta-Adapter')
    classes = tip.model.head.num_classes
    assert zs.model.head.num_classes == tipf.model.head.num_classes == meta.model.head.num_classes == classes
    # the official per-dataset settings
    assert tip.model.head.alpha == settings['init_alpha'] and tip.model.head.beta == settings['init_beta']
    assert tip.train_cfg.search_scale == tipf.train_cfg.search_scale == list(settings['search_scale'])
    assert tipf.train_cfg.max_epochs == settings['epochs'] == tipf.param_scheduler[0].end
    assert tipf.model.head.train_keys is True and tipf.train_dataloader.dataset.type == 'FeatureBankDataset'
    assert tipf.optim_wrapper.optimizer == dict(type='AdamW', lr=1e-3, eps=1e-4, weight_decay=0.01,
                                                betas=(0.9, 0.999))
    assert zs.model.head.num_shots == 0 and zs.model.head.alpha == 0. and zs.train_cfg.search is False
    assert meta.model.head.type == 'MetaAdapterHead' and meta.train_cfg.max_epochs == 5
    assert meta.train_dataloader.dataset.classes == meta.base_classes == meta.model.head.base_classes
    assert meta.test_evaluator.type == 'BaseNovelAccuracy' and meta.test_evaluator.base_classes == meta.base_classes
    expected_type = settings['type']
    assert tip.test_dataloader.dataset.type == expected_type
    # selection never on test by default
    assert tip.hp_selection in ('full_val', 'fewshot_val')
