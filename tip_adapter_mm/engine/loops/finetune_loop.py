import copy
from typing import List, Optional, Sequence

from mmengine.runner import EpochBasedTrainLoop
from mmpretrain.registry import DATASETS, LOOPS

from ...compat import ATOMIC_BACKEND_ARGS, cached_checkpoint_meta
from ...datasets.few_shot_dataset import FewShotDataset
from ...functional import tip_search_grids
from ...protocol import check_data_protocol, get_protocol
from ...settings import TRAIN_FROM
from ..features import unwrap
from ..hooks.build_cache_hook import find_cache_hook, image_dataset_cfg
from ..hooks.epoch_selection_hook import EpochSelectionHook
from ..record import timed, update_record
from ..selection import select_alpha_beta


#: how the head trains (FinetuneLoop's ``precision``)
PRECISIONS = ('fp32', 'official_fp16')


def check_finetune_settings(max_epochs, batch_size: int, drop_last: bool, num_images: int):
    """Raise a clear error for settings under which fine-tuning would run no training step."""
    if max_epochs is None or int(max_epochs) < 1:
        raise ValueError(f'train_cfg.max_epochs must be >= 1 to fine-tune, got {max_epochs} (use the '
                         'training-free Tip-Adapter config for no training)')
    if drop_last and batch_size > num_images:
        raise ValueError(
            f'train_dataloader.batch_size={batch_size} is larger than the {num_images} training images and '
            'drop_last=True, so no training step would run; lower the batch size or set drop_last=False')


def base_classes(head):
    """The base classes of a base/novel head (Meta-Adapter's ``base_mask``, or its class spec while names are
    not matched yet), None for other heads."""
    mask = getattr(head, 'base_mask', None)
    if mask is not None and bool(mask.any()):
        return mask.nonzero().flatten().tolist()
    return getattr(head, 'base_classes', None)


def training_loader(dataloader: dict, train_from: str, classes: Optional[List[int]] = None) -> dict:
    """The train dataloader config that reads ``train_from`` (feature bank or images) of ``classes``.

    Args:
        dataloader (dict): the configured loader; its dataset is the few-shot image train split.
        train_from (str): 'feature_bank' or 'image'.
        classes (optional): the base classes of a base/novel method (a class spec: indices, names,
            'meta_adapter/<dataset>'): it trains on the dataset's ``query`` split (Meta-Adapter's queries, whose
            classes the dataset's protocol decides) instead of the cache images.
    """
    if train_from not in TRAIN_FROM:
        raise ValueError(f'train_from must be one of {TRAIN_FROM}, got {train_from!r}')
    loader = copy.deepcopy(dataloader)
    dataset = loader['dataset']
    if classes is not None and _has_query_split(dataset):
        dataset = dict(dataset, split='query')
        dataset.setdefault('base_classes', classes)
        classes = None  # the query split holds the classes to train on
    if train_from == 'feature_bank':
        loader['dataset'] = dict(type='FeatureBankDataset', dataset=dataset, classes=classes)
        loader['num_workers'], loader['persistent_workers'] = 0, False  # the features are in memory
    else:  # seeded per (seed, epoch, item): a resumed run draws the views of the uninterrupted one
        loader['dataset'] = dict(type='SeededImageDataset', dataset=dataset, classes=classes)
    return loader


def _has_query_split(dataset) -> bool:
    dataset_cls = DATASETS.get(dataset.get('type')) if isinstance(dataset, dict) else None
    return isinstance(dataset_cls, type) and issubclass(dataset_cls, FewShotDataset)


@LOOPS.register_module()
class FinetuneLoop(EpochBasedTrainLoop):
    """Tip-Adapter-F: fine-tune the cache keys, keep the selected epoch, search alpha/beta again, test.

    mmengine's epoch-based loop with a selection step and an after-training phase:

    1. ``before_train`` hooks fill the cache (the keys' initial value) and the feature bank. The loop reads
       the train split as ``train_from`` says: the stored augmented views (a
       :class:`~tip_adapter_mm.datasets.FeatureBankDataset` around the configured image dataset, no CLIP
       forward pass) or the images; a head with base classes (Meta-Adapter) trains on those classes only.
    2. ``max_epochs`` epochs of training (only the parameters that require a gradient, i.e. the keys);
       after each epoch an :class:`~tip_adapter_mm.engine.EpochSelectionHook` scores the head on the
       selection split, and the checkpoint hook saves ``epoch_N.pth``.
    3. The selected epoch's keys are restored, alpha and beta are grid-searched on the selection split of
       ``hp_selection`` with the trained keys, and ``final.pth`` is saved.
    4. The test loop runs and the results hook writes ``results.json``.

    Args:
        runner: the runner.
        dataloader: the train dataloader config (its dataset: the few-shot image train split).
        max_epochs (int): training epochs (>= 1).
        train_from (str): 'feature_bank' (default) or 'image'.
        hp_selection (str): the selection protocol, :data:`tip_adapter_mm.protocol.HP_SELECTION`
            ('full_val' by default): which split selects the epoch and alpha/beta.
        selection (str, optional): the epoch rule, 'best_val', 'last' or 'legacy_test'; by default the
            protocol's.
        search (bool): whether the method has alpha and beta to search after training (False for
            Meta-Adapter); ``hp_selection='none'`` also keeps the configured values. Defaults to True.
        search_scale (sequence of float): largest [beta, alpha] of the grids.
        search_step (sequence of int): number of [beta, alpha] grid values. Defaults to (200, 20).
        run_test (bool): evaluate the test split at the end. Defaults to True.
        max_chunk_bytes (int): memory bound of one chunk of the search.
        precision (str): how the head trains: 'fp32' (default) or 'official_fp16', the official code's
            numerics: the head's parameters, buffers, activations, gradients and AdamW states in pure fp16 (no
            master weights, no loss scaling), on CPU and GPU. With AdamW's eps 1e-4 most second-moment
            entries underflow to 0 in fp16, which makes the official steps far larger than fp32 steps; this
            is part of the published numbers. The head returns to fp32 after training (selection, search and
            test in fp32).
    """

    def __init__(self, runner, dataloader, max_epochs: int = 20, train_from: str = 'feature_bank',
                 hp_selection: str = 'full_val', selection: Optional[str] = None, search: bool = True,
                 search_scale: Sequence[float] = (7., 3.), search_step: Sequence[int] = (200, 20),
                 run_test: bool = True, max_chunk_bytes: int = 1 << 28, precision: str = 'fp32'):
        if precision not in PRECISIONS:
            raise ValueError(f'train_cfg.precision must be one of {PRECISIONS}, got {precision!r}')
        self.precision = precision
        self.protocol = get_protocol(hp_selection)
        self.hp_selection = hp_selection
        check_finetune_settings(max_epochs, 1, False, 1)
        if isinstance(dataloader, dict):
            images_cfg = image_dataset_cfg(dataloader.get('dataset'))
            if isinstance(images_cfg, dict):
                check_data_protocol(images_cfg.get('protocol', 'default'), hp_selection)
            dataloader = training_loader(dataloader, train_from, base_classes(unwrap(runner.model).head))
        super().__init__(runner, dataloader, max_epochs=max_epochs, val_begin=int(max_epochs) + 1)
        check_finetune_settings(max_epochs, self.dataloader.batch_size, self.dataloader.drop_last,
                                len(self.dataloader.dataset))
        self.search = search and self.protocol.search
        self.beta_grid, self.alpha_grid = tip_search_grids(search_scale, search_step)
        self.search_scale, self.search_step = list(search_scale), list(search_step)
        self.run_test = run_test
        self.max_chunk_bytes = max_chunk_bytes
        self.selection_hook = EpochSelectionHook(selection or self.protocol.epoch_rule)
        runner.register_hook(self.selection_hook)
        find_cache_hook(runner).val_mode = self.protocol.val_mode

    def run(self):
        with cached_checkpoint_meta():  # a checkpoint per epoch: format the config and ask git once
            return self._run()

    def _run(self):
        runner = self.runner
        runner.call_hook('before_train')
        cache_hook = find_cache_hook(runner)
        cache_hook.fill_feature_bank(runner, self.dataloader.dataset)
        # the selection split, encoded once before training
        self.selection_hook.set_features(cache_hook.features(runner, self.selection_hook.split))
        self._resumed_mid_run = self._epoch > 0
        if self._epoch > 0:  # resumed from a checkpoint: continue its epoch selection
            self.selection_hook.resume(runner)
        head = unwrap(runner.model).head
        initial = {name: p.detach().float().clone() for name, p in head.named_parameters() if p.requires_grad}
        if self.precision == 'official_fp16':
            head.half()  # in place: the optimizer keeps the same Parameter objects, its states are made fp16
        with timed(runner, 'train'):
            while self._epoch < self._max_epochs and not self.stop_training:
                if hasattr(self.dataloader.dataset, 'set_epoch'):
                    self.dataloader.dataset.set_epoch(self._epoch)
                self.run_epoch()
        head.float()
        runner.call_hook('after_train')  # the selection hook restores the selected keys here
        # how far training moved the kept parameters (0 exactly when no step changed them; None after a resume,
        # whose starting values are not the initial ones)
        change = None if self._resumed_mid_run else max(
            ((p.detach().float() - initial[name]).abs().max().item() for name, p in head.named_parameters()
             if name in initial), default=0.)
        update_record(runner, trained_param_change=change)
        select_alpha_beta(runner, cache_hook.features(runner, self.protocol.split), self.search, self.beta_grid,
                          self.alpha_grid, self.max_chunk_bytes, self.protocol.split)
        if self.hp_selection in ('legacy_test', 'none'):
            update_record(runner, selection_split=self.protocol.label)
        update_record(runner, hp_selection=self.hp_selection,
                      search_scale=self.search_scale if self.search else None,
                      search_step=self.search_step if self.search else None, max_epochs=self._max_epochs,
                      trained_in=type(self.dataloader.dataset).__name__, train_precision=self.precision)
        runner.save_checkpoint(runner.work_dir, 'final.pth', save_optimizer=False, save_param_scheduler=False,
                               backend_args=ATOMIC_BACKEND_ARGS)
        if self.run_test:
            runner.test_loop.run()
        return runner.model
