"""What the project's runner checks before anything exists: datasets, model, checkpoint, settings.

Bad input gets a clear error (naming the file, the key or value, and what was expected) before the runner
makes its work dir, log, checkpoint, features or results.
"""
import copy
import os.path as osp

from mmengine.registry import init_default_scope

from ...protocol import check_data_protocol, get_protocol
from ...utils.checkpoint import CheckpointError, safe_load
from ..identity import KEY as IDENTITY
from ..identity import check_identity


def check_checkpoint(path: str, head_cfg: dict, cfg=None):
    """Raise if the checkpoint cannot be read safely or its head does not fit the configured head.

    The configured head is built and loads the checkpoint's ``head.*`` entries: the heads' own checks
    (``_load_from_state_dict``) decide, so loading and this early check are the same code. The messages name
    the file.
    """
    from mmpretrain.registry import MODELS
    state = safe_load(path, 'cpu', mmap=True)  # only the head's tensors are read
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint '{path}' holds a {type(state).__name__}, not a state dict")
    if cfg is not None:
        check_identity((state.get('meta') or {}).get(IDENTITY), cfg, path, resume=bool(cfg.get('resume')))
    state = state.get('state_dict', state)
    head_state = {k[len('head.'):]: v for k, v in state.items() if k.startswith('head.')}
    if not head_state:
        return
    head = MODELS.build(copy.deepcopy(head_cfg))
    try:
        head.load_state_dict(head_state, strict=False)
    except (ValueError, RuntimeError) as e:
        text = str(e)
        text = f"checkpoint '{path}' {text[len('checkpoint '):]}" if text.startswith('checkpoint ') else \
            f"checkpoint '{path}': {text}"
        raise ValueError(text) from None


def preflight(cfg) -> dict:
    """Check datasets, model and checkpoint of ``cfg`` before any output is written.

    Returns:
        dict: the built datasets by loader key.

    Raises:
        FileNotFoundError / ValueError: with the file, the value and what was expected.
    """
    from mmpretrain.registry import DATASETS

    from ...models.clip_backbone import _is_local_file
    from ...models.clip_preprocess import clip_preprocess
    from ...settings import check_backbone
    from ..features import check_store_cfg
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    check_store_cfg(cfg.get('feature_store'))
    model = cfg.get('model', {})
    backbone, head = model.get('backbone', {}), model.get('head', {})
    if backbone.get('type') == 'CLIPBackbone':
        pretrained = backbone.get('pretrained')
        if pretrained and _is_local_file(pretrained) and not osp.isfile(pretrained):
            raise FileNotFoundError(f"CLIP checkpoint file '{pretrained}' (model.backbone.pretrained) does "
                                    'not exist')
        # the head's feat_dim and the preprocessing hold the backbone's values (resolve_config filled them)
        check_backbone(cfg, None, clip_preprocess, getattr(cfg, 'filename', None))
    from ...datasets.few_shot_dataset import FewShotDataset, check_readable
    datasets = {}
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg.get(key)
        if loader and isinstance(loader.get('dataset'), dict):
            datasets[key] = DATASETS.build(copy.deepcopy(loader['dataset']))
            if isinstance(datasets[key], FewShotDataset) and not datasets[key].skip_unreadable:
                check_readable(datasets[key])
    train = datasets.get('train_dataloader')
    if train is not None and 'num_classes' in head:
        from ..hooks.build_cache_hook import image_dataset
        images = image_dataset(train)  # the cache holds every class, also when training on a subset
        classes = images.metainfo.get('classes') or ()
        if head['num_classes'] is None:  # the class count from the data
            head['num_classes'] = len(classes)
            if 'num_classes' in cfg:
                cfg['num_classes'] = len(classes)
        if len(classes) != int(head['num_classes']):
            raise ValueError(f"the dataset has {len(classes)} classes but model.head.num_classes is "
                             f"{head['num_classes']}")
        if int(head.get('num_shots', 0)):
            from mmpretrain.registry import MODELS

            from ...models.cache_head import check_train_split
            head_cls = MODELS.get(head.get('type'))
            check_train_split([int(images.get_data_info(i)['gt_label']) for i in range(len(images))],
                              int(head['num_classes']), int(head['num_shots']),
                              exact=not getattr(head_cls, 'accepts_short_classes', False),
                              split_shots=getattr(images, 'num_shots', None), classnames=classes)
    train_cfg = cfg.get('train_cfg') or {}
    if train_cfg.get('type') in ('FinetuneLoop', 'TrainingFreeLoop'):
        hp_selection = train_cfg.get('hp_selection', 'full_val')
        get_protocol(hp_selection)
        for dataset in datasets.values():
            check_data_protocol(getattr(dataset, 'protocol', 'default'), hp_selection)
    if train_cfg.get('type') == 'FinetuneLoop' and train is not None:
        from ..hooks.build_cache_hook import image_dataset_cfg
        from ..loops.finetune_loop import PRECISIONS, check_finetune_settings, training_loader
        # a valid data path; a base/novel head trains on the dataset's query split
        images_cfg = image_dataset_cfg(training_loader(cfg.train_dataloader, train_cfg.get('train_from', 'feature_bank'),
                                                       head.get('base_classes'))['dataset'])
        num_images = len(train)
        if isinstance(images_cfg, dict) and images_cfg.get('split') == 'query':
            num_images = len(DATASETS.build(copy.deepcopy(images_cfg)))
        if train_cfg.get('precision', 'fp32') not in PRECISIONS:
            raise ValueError(f"train_cfg.precision must be one of {PRECISIONS}, got {train_cfg['precision']!r}")
        loader = cfg.train_dataloader
        check_finetune_settings(train_cfg.get('max_epochs'), loader.get('batch_size', 1),
                                loader.get('drop_last', False), num_images)
    if cfg.get('load_from') and head.get('num_classes') is not None:
        check_checkpoint(cfg.load_from, head, cfg)
    return datasets
