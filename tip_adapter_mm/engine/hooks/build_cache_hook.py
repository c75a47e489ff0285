import copy
import os.path as osp
from typing import Dict, Optional, Tuple

import torch
from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmpretrain.registry import DATASETS, HOOKS

from ...functional import cache_keys_from_views, l2_normalize
from ...models.cache_head import check_train_split
from ...utils import atomic_json_dump
from ..features import encode_dataset, unwrap
from ..record import timed, update_record
from ..workdir import WRITTEN_BY


def build_dataset(runner, loader_key: str, overrides: Optional[dict] = None):
    """Build the dataset of ``runner.cfg[loader_key]`` (None when the config has no such loader).

    Args:
        runner: the runner.
        loader_key (str): e.g. 'val_dataloader'.
        overrides (dict, optional): keyword arguments replacing those of the dataset config.
    """
    loader_cfg = runner.cfg.get(loader_key)
    if not loader_cfg:
        return None
    dataset = loader_cfg['dataset']
    if not isinstance(dataset, dict):
        return dataset
    dataset = copy.deepcopy(dataset)
    dataset.update(overrides or {})
    return DATASETS.build(dataset)


def image_dataset_cfg(dataset_cfg):
    """The config of the image dataset inside dataset wrappers (e.g. ``FeatureBankDataset``)."""
    while isinstance(dataset_cfg, dict) and isinstance(dataset_cfg.get('dataset'), dict):
        dataset_cfg = dataset_cfg['dataset']
    return dataset_cfg


def split_overrides(cfg, split: str, val_mode: Optional[str]) -> dict:
    """The dataset arguments a split is read with: the protocol's ``val_mode`` for a few-shot validation
    split (:mod:`tip_adapter_mm.protocol`), nothing otherwise."""
    if split != 'val' or val_mode is None:
        return {}
    from ...datasets.few_shot_dataset import FewShotDataset
    dataset_cfg = (cfg.get('val_dataloader') or {}).get('dataset')
    dataset_cls = DATASETS.get(dataset_cfg.get('type')) if isinstance(dataset_cfg, dict) else None
    is_fewshot = isinstance(dataset_cls, type) and issubclass(dataset_cls, FewShotDataset)
    return dict(val_mode=val_mode) if is_fewshot else {}


def split_features(runner, split: str, overrides: Optional[dict] = None
                   ) -> Optional[Tuple[torch.Tensor, torch.Tensor]]:
    """Raw features [1, N, D] (CPU) and labels of the run's 'val' or 'test' split, from the feature store
    where it holds them (None if the split is absent or empty).

    Args:
        runner: the runner.
        split (str): 'val' or 'test'.
        overrides (dict, optional): keyword arguments replacing those of the dataset config.
    """
    key = f'{split}_dataloader'
    dataset = build_dataset(runner, key, overrides)
    if dataset is None or len(dataset) == 0:
        return None
    with timed(runner, f'{split}_features'):
        return encode_dataset(runner, dataset, image_dataset_cfg(runner.cfg[key]['dataset']), key, desc=split)


def image_dataset(dataset):
    """The image dataset behind a feature bank or a class subset (or the dataset itself)."""
    while dataset is not None and hasattr(dataset, 'dataset'):
        dataset = dataset.dataset
    return dataset


def find_cache_hook(runner, required: bool = True) -> Optional['BuildCacheHook']:
    """The run's :class:`BuildCacheHook` (None when absent and not ``required``)."""
    for hook in runner.hooks:
        if isinstance(hook, BuildCacheHook):
            return hook
    if required:
        raise RuntimeError('this method needs BuildCacheHook in custom_hooks')
    return None


@HOOKS.register_module()
class BuildCacheHook(Hook):
    """Encode images once: the text classifier, the cache, the feature bank and the validation features.

    Before training, validation and testing it fills the cache head: text classifier from class names x
    templates, cache from the K-shot train images, each encoded ``augment_epochs`` times with the train
    pipeline's random augmentation; the raw features are averaged over views and then L2-normalised (the
    official recipe). Views are seeded per (seed, view, image), so they differ from each other and the cache
    is the same on any number of processes. A filled cache (loaded or resumed checkpoint) is kept.

    The per-view features are kept and fill a :class:`~tip_adapter_mm.datasets.FeatureBankDataset` train
    split, so fine-tuning needs no CLIP forward pass. Validation (and test) features are obtained once per
    run on demand (:meth:`features`) for the alpha/beta search, the epoch selection and the test loop. All of
    them come from the feature store (``cfg.feature_store``) where it holds them: only missing image views
    are encoded (:func:`~tip_adapter_mm.engine.features.encode_dataset`). The sampled image lists are
    written to ``<work_dir>/fewshot_split.json``.

    Args:
        augment_epochs (int): augmented views per cache image. Defaults to 10.
        seed (int, optional): augmentation seed; defaults to the dataset's few-shot seed.
        batch_size (int, optional): images per forward pass; defaults to the train dataloader's.
        num_workers (int, optional): loader workers; defaults to the train dataloader's.
    """

    priority = 'VERY_HIGH'

    def __init__(self, augment_epochs: int = 10, seed: Optional[int] = None,
                 batch_size: Optional[int] = None, num_workers: Optional[int] = None):
        if augment_epochs < 1:
            raise ValueError(f'augment_epochs must be >= 1, got {augment_epochs}')
        self.augment_epochs = augment_epochs
        self.seed = seed
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.view_features = None  # [V, N, D] raw features of the cache images
        self.view_labels = None
        self.val_mode = None  # the validation split's val_mode, set by the loop from its hp_selection
        self.train_images = None  # the few-shot train split (image dataset), once built
        self._features: Dict[str, Tuple[torch.Tensor, torch.Tensor]] = {}

    def before_train(self, runner):
        self.build(runner)

    def fill_feature_bank(self, runner, bank):
        """Give a :class:`~tip_adapter_mm.datasets.FeatureBankDataset` the stored views (called by the loop
        that trains from it; views are encoded again only when the cache came from a checkpoint)."""
        if not hasattr(bank, 'set_features') or bank.features is not None:
            return
        images = image_dataset(bank)
        columns = self._cache_columns(images)
        if columns is None:  # other images than the cache's (Meta-Adapter's held-out or official queries)
            bank.set_features(*self._encode_views(runner, images, 'queries'))
        elif columns == list(range(self.view_features.shape[1])):  # the cache itself: shared, not copied
            bank.set_features(self.view_features, self.view_labels)
        else:
            bank.set_features(self.view_features[:, columns], self.view_labels[columns])

    def _cache_columns(self, dataset) -> Optional[list]:
        """The positions in the cache of the images of ``dataset`` (None when one is not in the cache or the
        cache views are not at hand)."""
        if self.view_features is None or self.train_images is None:
            return None
        paths = [self.train_images.get_data_info(i).get('img_path') for i in range(len(self.train_images))]
        position = {path: i for i, path in enumerate(paths)}
        wanted = [dataset.get_data_info(i).get('img_path') for i in range(len(dataset))]
        if any(path is None or path not in position for path in wanted):
            return None
        return [position[path] for path in wanted]

    def before_val(self, runner):
        self.build(runner)

    def before_test(self, runner):
        self.build(runner)

    def _loader_arg(self, runner, name, default):
        value = getattr(self, name)
        return value if value is not None else runner.cfg.train_dataloader.get(name, default)

    def _encode_views(self, runner, dataset, desc: str = 'cache'):
        seed = self.seed if self.seed is not None else getattr(dataset, 'seed', runner.seed)
        with timed(runner, desc):
            return encode_dataset(runner, dataset, image_dataset_cfg(runner.cfg.train_dataloader.dataset),
                                  'train_dataloader', num_views=self.augment_epochs, seed=seed, desc=desc,
                                  batch_size=self._loader_arg(runner, 'batch_size', 64),
                                  num_workers=self._loader_arg(runner, 'num_workers', 0))

    def build(self, runner):
        model = unwrap(runner.model)
        head = model.head
        if bool(head.cache_ready):
            print_log('cache already filled (built earlier in this run or loaded from a checkpoint)',
                      logger='current')
            return
        dataset = image_dataset(build_dataset(runner, 'train_dataloader'))
        self.train_images = dataset
        classes = list(dataset.metainfo['classes'])
        templates = list(dataset.metainfo.get('templates') or ['a photo of a {}.'])
        if len(classes) != head.num_classes:
            raise ValueError(f'the dataset has {len(classes)} classes but model.head.num_classes is '
                             f'{head.num_classes}')
        if hasattr(head, 'set_class_names'):  # a base/novel split given by class names
            head.set_class_names(classes)
        device = head.clip_weights.device
        with timed(runner, 'text_classifier'):
            clip_weights = model.backbone.encode_text(classes, templates).to(device)
        if head.cache_size == 0:
            head.set_cache(clip_weights)
            return
        check_train_split([int(dataset.get_data_info(i)['gt_label']) for i in range(len(dataset))],
                          head.num_classes, head.num_shots, exact=not getattr(head, 'accepts_short_classes', False),
                          split_shots=getattr(dataset, 'num_shots', None), classnames=classes)
        self.view_features, self.view_labels = self._encode_views(runner, dataset)
        head.set_cache(clip_weights, cache_keys_from_views(self.view_features).to(device),
                       self.view_labels.to(device))
        update_record(runner, cache_size=len(dataset), augment_epochs=self.augment_epochs,
                      data_protocol=getattr(dataset, 'protocol', 'default'))
        self._save_split(runner, dataset)

    def features(self, runner, split: str) -> Optional[Tuple[torch.Tensor, torch.Tensor]]:
        """Normalised features and labels of the 'val' or 'test' split, encoded once (None if absent)."""
        raw = self.raw_features(runner, split)
        if raw is None:
            return None
        device = unwrap(runner.model).head.clip_weights.device
        return l2_normalize(raw[0][0]).to(device), raw[1].to(device)

    def raw_features(self, runner, split: str) -> Optional[Tuple[torch.Tensor, torch.Tensor]]:
        """Raw features [1, N, D] (CPU) and labels of the 'val' or 'test' split, encoded or read from the
        feature store once per run (None if the split is absent or empty)."""
        if split not in self._features:
            self._features[split] = split_features(runner, split, self._overrides(split, runner))
        return self._features[split]

    def _overrides(self, split: str, runner) -> dict:
        return split_overrides(runner.cfg, split, self.val_mode)

    def _save_split(self, runner, train_dataset):
        if not is_main_process() or not hasattr(train_dataset, 'split_items'):
            return
        split = dict(written_by=WRITTEN_BY, data_root=train_dataset.data_root,
                     num_shots=getattr(train_dataset, 'num_shots', None), seed=getattr(train_dataset, 'seed', None),
                     classes=list(train_dataset.metainfo['classes']), train=train_dataset.split_items())
        val = image_dataset(build_dataset(runner, 'val_dataloader', self._overrides('val', runner)))
        if val is not None and hasattr(val, 'split_items') and len(val):
            split['val'] = val.split_items()
        head = unwrap(runner.model).head
        if getattr(head, 'base_classes', None) is not None:  # Meta-Adapter's meta-training queries
            from ..loops.finetune_loop import training_loader
            queries_cfg = image_dataset_cfg(training_loader(runner.cfg.train_dataloader, 'image',
                                                            head.base_classes)['dataset'])
            if isinstance(queries_cfg, dict) and queries_cfg.get('split') == 'query':
                split['query'] = DATASETS.build(copy.deepcopy(queries_cfg)).split_items()
        if getattr(train_dataset, 'protocol', 'default') != 'default':  # its evaluated set is sampled too
            split['protocol'] = train_dataset.protocol
            test = image_dataset(build_dataset(runner, 'test_dataloader'))
            if test is not None and hasattr(test, 'split_items'):
                split['test'] = test.split_items()
        atomic_json_dump(split, osp.join(runner.work_dir, 'fewshot_split.json'), indent=None)
