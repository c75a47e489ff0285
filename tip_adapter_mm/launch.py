"""What ``tools/train.py`` and ``tools/test.py`` share: argument merging, launch, and the preflight check.

The preflight check builds the datasets and checks the model config and the checkpoint before the runner
exists, so bad input gets a clear error before anything (work dir, log, checkpoint, features, results) is
written.
"""
import argparse
import copy
import os
import os.path as osp

import torch
from mmengine.config import Config, DictAction
from mmengine.registry import init_default_scope

from . import compat
from .utils.checkpoint import CheckpointError, safe_load


def default_work_dir(config_path: str) -> str:
    return osp.join('./work_dirs', osp.splitext(osp.basename(config_path))[0])


def merge_common_args(cfg: Config, args) -> Config:
    """Apply the arguments train.py and test.py share with mmpretrain's tools."""
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = default_work_dir(args.config)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    apply_dataset_keys(cfg)
    apply_fewshot_keys(cfg)
    apply_train_keys(cfg)
    apply_base_classes(cfg)
    apply_hp_selection(cfg)
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg.get(key)
        if not loader:
            continue
        loader.setdefault('collate_fn', dict(type='default_collate'))
        # mmpretrain's tools force persistent workers (so augmentations differ between epochs); that crashes
        # with num_workers=0 (which --cfg-options may set), where one process gives fresh randomness anyway
        loader.setdefault('persistent_workers', loader.get('num_workers', 0) > 0)
        loader.setdefault('pin_memory', torch.cuda.is_available())
        if getattr(args, 'no_pin_memory', False):
            loader['pin_memory'] = False
        if getattr(args, 'no_persistent_workers', False):
            loader['persistent_workers'] = False
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(getattr(args, 'local_rank', 0))
    return cfg


def apply_dataset_keys(cfg: Config):
    """Copy a dataset's settings, top-level keys of its ``_base_/datasets`` file, into the model and loop.

    ``num_classes`` (the head's), ``init_alpha`` / ``init_beta`` (the cache head's alpha and beta before any
    search) and ``search_scale`` (the [beta, alpha] grid extents) are per-dataset values of the official
    configs; a method config stays the same for every dataset and inherits them.
    """
    head = cfg.get('model', {}).get('head')
    if head is not None:
        if cfg.get('num_classes') is not None:
            head['num_classes'] = cfg.num_classes
        if head.get('type') == 'CacheHead':
            for key, name in (('init_alpha', 'alpha'), ('init_beta', 'beta')):
                if cfg.get(key) is not None and not (name == 'alpha' and head.get(name) == 0.):
                    head[name] = cfg[key]  # (alpha 0 marks zero-shot CLIP)
    train_cfg = cfg.get('train_cfg') or {}
    if cfg.get('search_scale') is not None and 'search_scale' in train_cfg:
        train_cfg['search_scale'] = list(cfg.search_scale)


def apply_fewshot_keys(cfg: Config):
    """Copy the top-level ``num_shots``, ``fewshot_seed`` and ``fewshot_split_file`` into head and datasets.

    K and the sampling seed must agree between the head (whose cache has C x K fixed-shape entries) and the
    train/val datasets (the validation split is held out of the images outside the K-shot sample), so the
    configs set them once at the top level: ``--cfg-options num_shots=8 fewshot_seed=2``.
    ``fewshot_split_file`` reads the sampled lists of an earlier run (its ``fewshot_split.json``) back, so a
    result never depends on RNG state again.
    """
    shots, seed, split_file = cfg.get('num_shots'), cfg.get('fewshot_seed'), cfg.get('fewshot_split_file')
    head = cfg.get('model', {}).get('head')
    if shots is not None and head is not None and 'num_shots' in head:
        head['num_shots'] = shots
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        dataset = (cfg.get(key) or {}).get('dataset')
        if not isinstance(dataset, dict):
            continue
        if shots is not None and 'num_shots' in dataset:
            dataset['num_shots'] = shots
        if seed is not None and 'seed' in dataset:
            dataset['seed'] = seed
        if split_file is not None and 'seed' in dataset:  # a few-shot dataset: read the lists back
            dataset['split_file'] = split_file


def apply_train_keys(cfg: Config):
    """Resolve the top-level ``train_from`` and ``max_epochs`` keys of fine-tuning configs.

    ``train_from='feature_bank'`` trains from the augmented views stored while building the cache (no CLIP
    forward pass); ``'image'`` re-encodes augmented images at every step (the official way). ``max_epochs``
    sets the loop's epochs and the cosine schedule's length together.
    """
    loader = cfg.get('train_dataloader')
    train_from = cfg.get('train_from')
    if loader and train_from is not None:
        dataset = loader['dataset']
        is_bank = dataset.get('type') == 'FeatureBankDataset'
        if train_from == 'feature_bank' and not is_bank:
            loader['dataset'] = dict(type='FeatureBankDataset', dataset=dataset)
            loader['num_workers'], loader['persistent_workers'] = 0, False  # features are in memory
        elif train_from == 'image' and is_bank:
            loader['dataset'] = dataset['dataset']
        elif train_from not in ('feature_bank', 'image'):
            raise ValueError(f"train_from must be 'feature_bank' or 'image', got {train_from!r}")
    epochs = cfg.get('max_epochs')
    if epochs is not None and cfg.get('train_cfg') and 'max_epochs' in cfg.train_cfg:
        cfg.train_cfg['max_epochs'] = epochs
        schedulers = cfg.get('param_scheduler') or []
        for sched in schedulers if isinstance(schedulers, list) else [schedulers]:
            if sched.get('by_epoch', True) and 'end' in sched:
                sched['end'] = epochs
                if 'T_max' in sched:
                    sched['T_max'] = epochs


def apply_base_classes(cfg: Config):
    """Copy the top-level ``base_classes`` of a base/novel protocol where they are used.

    The head (its ``base_mask``), the training queries (feature bank or image subset: base classes only)
    and the base/novel accuracy metrics all follow the one list.
    """
    base = cfg.get('base_classes')
    if base is None:
        return
    base = [int(c) for c in base]
    head = cfg.get('model', {}).get('head')
    if head is not None and head.get('type') == 'MetaAdapterHead':
        head['base_classes'] = base
    loader = cfg.get('train_dataloader')
    if loader:
        dataset = loader['dataset']
        if dataset.get('type') in ('FeatureBankDataset', 'ClassSubsetDataset'):
            dataset['classes'] = base
        else:
            loader['dataset'] = dict(type='ClassSubsetDataset', dataset=dataset, classes=base)
    for key in ('val_evaluator', 'test_evaluator'):
        evaluator = cfg.get(key)
        for metric in evaluator if isinstance(evaluator, list) else [evaluator]:
            if isinstance(metric, dict) and metric.get('type') == 'BaseNovelAccuracy':
                metric['base_classes'] = base


HP_SELECTION = ('full_val', 'fewshot_val', 'none', 'legacy_test')


def apply_hp_selection(cfg: Config):
    """Resolve the top-level ``hp_selection``: which data alpha, beta and the epoch are chosen on.

    - ``full_val``: the whole validation split (the official protocol of the 10 CoOp datasets);
    - ``fewshot_val``: min(K, 4) validation images per class (CoOp's protocol);
    - ``none``: nothing is selected: the configured alpha and beta, the last epoch;
    - ``legacy_test``: the official ImageNet protocol, which tunes on the **test** split; allowed only by
      this name, and ``results.json`` says ``"selection_split": "test (legacy)"``.

    Datasets without a validation split (ImageNet) hold min(K, 4) images per class out of train for the
    first two modes.
    """
    mode = cfg.get('hp_selection')
    if mode is None:
        return
    if mode not in HP_SELECTION:
        raise ValueError(f'hp_selection must be one of {HP_SELECTION}, got {mode!r}')
    train_cfg = cfg.get('train_cfg') or {}
    finetune = train_cfg.get('type') == 'FinetuneLoop'
    val = (cfg.get('val_dataloader') or {}).get('dataset')
    if mode in ('full_val', 'fewshot_val') and isinstance(val, dict):
        val['val_mode'] = 'full' if mode == 'full_val' else 'fewshot'
    elif mode == 'none':
        if 'search' in train_cfg or train_cfg.get('type') == 'TrainingFreeLoop':
            train_cfg['search'] = False
        if finetune:
            train_cfg['selection'] = 'last'
    elif mode == 'legacy_test':
        cfg.val_dataloader = copy.deepcopy(cfg.test_dataloader)
        if finetune:
            train_cfg['selection'] = 'legacy_test'
    if train_cfg:
        train_cfg['hp_selection'] = mode


def setup_launcher(cfg: Config):
    """Distributed launch: CPU processes need the gloo shim, GPUs use mmengine's own path."""
    if cfg.launcher != 'none':
        compat.init_cpu_distributed(cfg)


def _head_shapes(head_cfg: dict):
    c, d, k = int(head_cfg['num_classes']), int(head_cfg['feat_dim']), int(head_cfg.get('num_shots', 0))
    if head_cfg.get('type') == 'MetaAdapterHead':
        # the adapter transfers to other classes (its cache is rebuilt); its feature size must match
        return {'q_proj.weight': (d, d), 'k_proj.weight': (d, d)}
    return dict(clip_weights=(c, d), cache_keys=(c * k, d))


def check_checkpoint(path: str, head_cfg: dict):
    """Raise if the checkpoint's head does not fit the configured head (names the file and both shapes)."""
    state = safe_load(path, 'cpu')
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint '{path}' holds a {type(state).__name__}, not a state dict")
    state = state.get('state_dict', state)
    for name, expected in _head_shapes(head_cfg).items():
        key = next((k for k in state if k.endswith('head.' + name)), None)
        if key is not None and tuple(state[key].shape) != expected:
            raise ValueError(
                f"checkpoint '{path}' holds head.{name} of shape {tuple(state[key].shape)} but the config "
                f"builds {expected} (num_classes={head_cfg['num_classes']}, num_shots="
                f"{head_cfg.get('num_shots', 0)}, feat_dim={head_cfg['feat_dim']}): it was made for another "
                'dataset, shot count or backbone')


def preflight(cfg: Config):
    """Check datasets, model and checkpoint of ``cfg`` before any output is written.

    Raises:
        FileNotFoundError / ValueError: with the file, the value and what was expected.
    """
    import open_clip
    from mmpretrain.registry import DATASETS

    from .models.clip_backbone import _is_local_file, resolve_model_name
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    model = cfg.get('model', {})
    backbone, head = model.get('backbone', {}), model.get('head', {})
    if backbone.get('type') == 'CLIPBackbone':
        name = resolve_model_name(backbone.get('model_name', 'RN50'), backbone.get('pretrained', 'openai'))
        pretrained = backbone.get('pretrained')
        if pretrained and _is_local_file(pretrained) and not osp.isfile(pretrained):
            raise FileNotFoundError(f"CLIP checkpoint file '{pretrained}' (model.backbone.pretrained) does "
                                    'not exist')
        embed_dim = (open_clip.get_model_config(name) or {}).get('embed_dim')
        if embed_dim and head.get('feat_dim') and int(head['feat_dim']) != int(embed_dim):
            raise ValueError(f"model.head.feat_dim={head['feat_dim']} but open_clip model '{name}' embeds "
                             f'into {embed_dim} dimensions')
    datasets = {}
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg.get(key)
        if loader and isinstance(loader.get('dataset'), dict):
            datasets[key] = DATASETS.build(copy.deepcopy(loader['dataset']))
    train = datasets.get('train_dataloader')
    if train is not None and head.get('num_classes') is not None:
        from .engine.hooks.build_cache_hook import image_dataset
        images = image_dataset(train)  # the cache holds every class, also when training on a subset
        classes = images.metainfo.get('classes') or ()
        if len(classes) != int(head['num_classes']):
            raise ValueError(f"the dataset has {len(classes)} classes but model.head.num_classes is "
                             f"{head['num_classes']}")
        size = int(head['num_classes']) * int(head.get('num_shots', 0))
        if size and len(images) != size:
            raise ValueError(
                f'the train split has {len(images)} images but the head holds num_classes x num_shots = '
                f"{head['num_classes']} x {head.get('num_shots')} = {size} cache entries: set "
                'model.head.num_shots and train_dataloader.dataset.num_shots to the same K')
    train_cfg = cfg.get('train_cfg') or {}
    if train_cfg.get('type') == 'FinetuneLoop' and train is not None:
        from .engine.loops.finetune_loop import check_finetune_settings
        loader = cfg.train_dataloader
        check_finetune_settings(train_cfg.get('max_epochs'), loader.get('batch_size', 1),
                                loader.get('drop_last', False), len(train))
    if cfg.get('load_from') and head.get('num_classes') is not None:
        check_checkpoint(cfg.load_from, head)
    return datasets


def build_runner(cfg: Config):
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    preflight(cfg)
    setup_launcher(cfg)
    return Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)


def parse_train_args(argv=None):
    parser = argparse.ArgumentParser(description='Train a model')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument('--resume', nargs='?', type=str, const='auto',
                        help='resume from this checkpoint, or without a path from the latest checkpoint in '
                        'the work directory')
    parser.add_argument('--amp', action='store_true', help='enable automatic-mixed-precision training')
    parser.add_argument('--no-validate', action='store_true',
                        help='do not evaluate checkpoints during training')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the learning rate by the actual batch size')
    parser.add_argument('--no-pin-memory', action='store_true', help='disable pin_memory in dataloaders')
    parser.add_argument('--no-persistent-workers', action='store_true',
                        help='disable persistent_workers in dataloaders')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value pairs, e.g. num_shots=8 fewshot_seed=2')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none',
                        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    return parser.parse_args(argv)


def main_train(argv=None):
    """``tools/train.py``: build the runner from a config and arguments, and train."""
    args = parse_train_args(argv)
    cfg = Config.fromfile(args.config)
    cfg = merge_common_args(cfg, args)
    if args.no_validate:
        cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    if args.amp:
        if not torch.cuda.is_available():
            raise RuntimeError('--amp needs a GPU: mmengine\'s AmpOptimWrapper supports CUDA, NPU, MLU and MUSA '
                               'devices only')
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if args.auto_scale_lr:
        cfg.auto_scale_lr.enable = True
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    runner = build_runner(cfg)
    runner.train()
    return runner


def parse_test_args(argv=None):
    parser = argparse.ArgumentParser(description='Test (and evaluate) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', nargs='?', default=None,
                        help='checkpoint file; without one the cache is built from the config')
    parser.add_argument('--work-dir', help='the directory to save the file containing evaluation metrics')
    parser.add_argument('--out', help='dump the predictions to this pickle file')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value pairs')
    parser.add_argument('--no-pin-memory', action='store_true', help='disable pin_memory in dataloaders')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none',
                        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    return parser.parse_args(argv)


def main_test(argv=None):
    """``tools/test.py``: evaluate a checkpoint (or a cache built from the config) on the test split."""
    args = parse_test_args(argv)
    cfg = Config.fromfile(args.config)
    cfg = merge_common_args(cfg, args)
    cfg.load_from = args.checkpoint
    cfg.resume = False
    runner = build_runner(cfg)
    if args.out:
        from mmengine.evaluator import DumpResults
        runner.test_evaluator.metrics.append(DumpResults(out_file_path=args.out))
    return runner.test()

