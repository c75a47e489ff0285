"""Config inheritance, the settings and the tools' argument handling (no model is built)."""
import glob
import os.path as osp

import pytest
from mmengine.config import Config

from conftest import ROOT
from tip_adapter_mm.engine.runner import resolve_config
from tip_adapter_mm.launch import merge_train_args, parse_train_args


def _cfg(name, *options):
    """The config as the project's runner builds it from tools/train.py's arguments."""
    args = parse_train_args([osp.join(ROOT, 'configs', name), *(['--cfg-options', *options] if options else [])])
    return resolve_config(merge_train_args(Config.fromfile(args.config), args))


def _plain(name):
    """The config as mmengine reads the file (what print_config, mim and Runner.from_cfg see)."""
    return Config.fromfile(osp.join(ROOT, 'configs', name))


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
    from tip_adapter_mm.engine.loops.finetune_loop import training_loader
    tipf = _cfg('tip_f_imagenet_16shot.py')
    assert training_loader(tipf.train_dataloader, tipf.train_cfg.train_from)['num_workers'] == 0  # in memory


def test_a_place_changed_alone_is_an_error():
    with pytest.raises(ValueError, match=r'model\.head\.num_shots=4 but num_shots=16'):
        _cfg('tip_imagenet_16shot.py', 'model.head.num_shots=4')
    with pytest.raises(ValueError, match=r'num_shots was set to 8 and model\.head\.num_shots to 4'):
        _cfg('tip_imagenet_16shot.py', 'num_shots=8', 'model.head.num_shots=4')
    # the same value in both places is no conflict
    assert _cfg('tip_imagenet_16shot.py', 'num_shots=8', 'model.head.num_shots=8').model.head.num_shots == 8


@pytest.mark.parametrize('path', sorted(glob.glob(osp.join(ROOT, 'configs', '*.py'))), ids=osp.basename)
def test_every_config_file_holds_the_values_that_run(path):
    """Read as mmengine reads it, each config already holds its settings where the modules read them, and
    what the project's runner does to it changes nothing."""
    from tip_adapter_mm.settings import SETTINGS, check_consistency, places
    plain = Config.fromfile(path)
    check_consistency(plain, path)  # (a config for the user's own folder: num_classes None, counted from the data)
    for key in SETTINGS:
        if key in plain and not places(plain, key):  # e.g. init_alpha of a Meta-Adapter config
            with pytest.raises(ValueError, match=f'nothing in this config reads {key}'):
                _cfg(osp.basename(path), f'{key}=7')
    resolved = resolve_config(Config.fromfile(path))
    for key in ('model', 'train_cfg', 'train_dataloader', 'val_dataloader', 'test_dataloader', 'val_evaluator',
                'test_evaluator', 'param_scheduler'):
        if key in plain and not (key.endswith('dataloader') and plain[key].get('num_workers') == 0):
            assert resolved[key] == plain[key], key


@pytest.mark.parametrize('name,dim', [('RN50', 1024), ('RN101', 512), ('ViT-B/32', 512), ('ViT-B/16', 512),
                                      ('ViT-L/14', 768)])
def test_backbone_switch_is_one_override(name, dim):
    """A method x dataset config takes another backbone by one override; its feature size comes from open_clip."""
    import open_clip

    from tip_adapter_mm.models import resolve_model_name
    cfg = _cfg('tip_caltech101_16shot.py', f'model.backbone.model_name={name}')
    reference = _cfg('tip_caltech101_16shot.py')
    assert cfg.model.backbone.model_name == name and cfg.model.head.feat_dim == dim
    resolved = resolve_model_name(name, 'openai')
    assert resolved.endswith('-quickgelu')
    assert open_clip.get_model_config(resolved)['embed_dim'] == dim
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
    tip = _plain(f'tip_{dataset}_16shot.py')
    zs = _plain(f'zeroshot_{dataset}.py')
    tipf = _plain(f'tip_f_{dataset}_16shot.py')
    meta = _plain(f'meta_adapter_{dataset}_16shot.py')
    assert (tip.method, zs.method, tipf.method, meta.method) == \
        ('Tip-Adapter', 'Zero-shot CLIP', 'Tip-Adapter-F', 'Meta-Adapter')
    classes = tip.model.head.num_classes
    assert zs.model.head.num_classes == tipf.model.head.num_classes == meta.model.head.num_classes == classes
    # the official per-dataset settings
    assert tip.model.head.alpha == settings['init_alpha'] and tip.model.head.beta == settings['init_beta']
    assert tip.train_cfg.search_scale == tipf.train_cfg.search_scale == list(settings['search_scale'])
    assert tipf.train_cfg.max_epochs == settings['epochs'] and 'end' not in tipf.param_scheduler[0]  # follows
    assert tipf.model.head.train_keys is True and tipf.train_cfg.train_from == 'feature_bank'
    assert tipf.optim_wrapper.optimizer == dict(type='AdamW', lr=1e-3, eps=1e-4, weight_decay=0.01,
                                                betas=(0.9, 0.999))
    assert zs.model.head.num_shots == 0 and zs.model.head.alpha == 0. and zs.train_cfg.search is False
    assert meta.model.head.type == 'MetaAdapterHead' and meta.train_cfg.max_epochs == 5
    assert meta.base_classes == meta.model.head.base_classes == meta.val_evaluator.base_classes
    assert meta.test_evaluator.type == 'BaseNovelAccuracy' and meta.test_evaluator.base_classes == meta.base_classes
    expected_type = settings['type']
    assert tip.test_dataloader.dataset.type == expected_type
    # selection never on test by default
    assert tip.hp_selection in ('full_val', 'fewshot_val') and tip.train_cfg.hp_selection == tip.hp_selection
    assert tipf.train_cfg.hp_selection == meta.train_cfg.hp_selection == tip.hp_selection
