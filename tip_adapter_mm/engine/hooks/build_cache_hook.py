import copy
import os.path as osp
from typing import Optional

from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmpretrain.registry import DATASETS, HOOKS

from ...functional import cache_keys_from_views
from ...utils import atomic_json_dump
from ..features import extract_features, unwrap
from ..record import timed, update_record


def build_dataset(runner, loader_key: str):
    """Build the dataset of ``runner.cfg[loader_key]`` (None when the config has no such loader)."""
    loader_cfg = runner.cfg.get(loader_key)
    if not loader_cfg:
        return None
    dataset = loader_cfg['dataset']
    return dataset if not isinstance(dataset, dict) else DATASETS.build(copy.deepcopy(dataset))


@HOOKS.register_module()
class BuildCacheHook(Hook):
    """Fill a cache head: text classifier from class names x templates, cache from the K-shot images.

    Runs before training, validation and testing, and does nothing when the head's cache is already filled
    (a loaded or resumed checkpoint). The cache images are the train split (``train_dataloader.dataset``),
    each encoded ``augment_epochs`` times with the train pipeline's random augmentation; the raw features
    are averaged over views and then L2-normalised (the official recipe). Views are seeded per (seed, view,
    image), so they differ from each other and the cache is the same on any number of processes. The
    sampled image lists are written to ``<work_dir>/fewshot_split.json``.

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
        self.view_features = None  # [V, N, D] raw features of the last cache built

    def before_train(self, runner):
        self.build(runner)

    def before_val(self, runner):
        self.build(runner)

    def before_test(self, runner):
        self.build(runner)

    def build(self, runner):
        model = unwrap(runner.model)
        head = model.head
        if bool(head.cache_ready):
            print_log('cache already filled (built earlier in this run or loaded from a checkpoint)', logger='current')
            return
        dataset = build_dataset(runner, 'train_dataloader')
        classes = list(dataset.metainfo['classes'])
        templates = list(dataset.metainfo.get('templates') or ['a photo of a {}.'])
        if len(classes) != head.num_classes:
            raise ValueError(f'the dataset has {len(classes)} classes but model.head.num_classes is '
                             f'{head.num_classes}')
        device = head.clip_weights.device
        with timed(runner, 'text_classifier'):
            clip_weights = model.backbone.encode_text(classes, templates).to(device)
        if head.cache_size == 0:
            head.set_cache(clip_weights)
            return
        if len(dataset) != head.cache_size:
            raise ValueError(
                f'the train split has {len(dataset)} images but the head holds num_classes x num_shots = '
                f'{head.num_classes} x {head.num_shots} = {head.cache_size} cache entries: set '
                'model.head.num_shots and train_dataloader.dataset.num_shots to the same K')
        loader_cfg = runner.cfg.train_dataloader
        seed = self.seed if self.seed is not None else getattr(dataset, 'seed', runner.seed)
        with timed(runner, 'cache'):
            views, labels = extract_features(
                runner.model, dataset, num_views=self.augment_epochs, seed=seed,
                batch_size=self.batch_size or loader_cfg.get('batch_size', 64),
                num_workers=self.num_workers if self.num_workers is not None else
                loader_cfg.get('num_workers', 0), desc='cache')
        head.set_cache(clip_weights, cache_keys_from_views(views).to(device), labels.to(device))
        self.view_features = views
        update_record(runner, cache_size=len(dataset), augment_epochs=self.augment_epochs)
        self._save_split(runner, dataset)

    @staticmethod
    def _save_split(runner, train_dataset):
        if not is_main_process() or not hasattr(train_dataset, 'split_items'):
            return
        split = dict(data_root=train_dataset.data_root, num_shots=getattr(train_dataset, 'num_shots', None),
                     seed=getattr(train_dataset, 'seed', None), classes=list(train_dataset.metainfo['classes']),
                     train=train_dataset.split_items())
        val = build_dataset(runner, 'val_dataloader')
        if val is not None and getattr(val, 'split_dirs', {}).get('val', '') is None:
            split['val'] = val.split_items()  # held out of the train images: part of the sampled lists
        atomic_json_dump(split, osp.join(runner.work_dir, 'fewshot_split.json'), indent=None)
