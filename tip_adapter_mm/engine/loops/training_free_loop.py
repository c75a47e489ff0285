from typing import Sequence

import torch
from mmengine.dist import broadcast_object_list
from mmengine.logging import print_log
from mmengine.runner import BaseLoop
from mmpretrain.registry import LOOPS

from ...functional import l2_normalize, search_tip_hparams, tip_search_grids, topk_accuracy
from ..features import extract_features, unwrap
from ..hooks.build_cache_hook import build_dataset
from ..record import timed, update_record


@LOOPS.register_module()
class TrainingFreeLoop(BaseLoop):
    """Training-free Tip-Adapter: build the cache, choose alpha and beta on validation, save, test.

    1. ``before_train`` hooks fill the head (:class:`~tip_adapter_mm.engine.BuildCacheHook`).
    2. The validation split (``val_dataloader.dataset``) is encoded once and alpha, beta are grid-searched on
       its features with the official grid and tie rule (:func:`~tip_adapter_mm.functional.search_tip_hparams`).
       The test split is never used for any choice.
    3. One "epoch" ends, so the checkpoint hook saves the adapter state (``epoch_1.pth``).
    4. The test loop runs and the results hook writes ``results.json``.

    Args:
        runner: the runner.
        dataloader: the train dataloader (or its config); the cache hook reads the same dataset config.
        search (bool): search alpha and beta; False keeps the head's values. Defaults to True.
        search_scale (sequence of float): largest [beta, alpha] of the grids (endpoint excluded).
        search_step (sequence of int): number of [beta, alpha] grid values. Defaults to (200, 20).
        run_test (bool): evaluate the test split after saving. Defaults to True.
        max_chunk_bytes (int): memory bound of one chunk of the search.
    """

    def __init__(self, runner, dataloader, search: bool = True, search_scale: Sequence[float] = (7., 3.),
                 search_step: Sequence[int] = (200, 20), run_test: bool = True,
                 max_chunk_bytes: int = 1 << 28):
        super().__init__(runner, dataloader)
        self.search = search
        self.beta_grid, self.alpha_grid = tip_search_grids(search_scale, search_step)
        self.search_scale, self.search_step = list(search_scale), list(search_step)
        self.run_test = run_test
        self.max_chunk_bytes = max_chunk_bytes
        self._epoch = 0

    @property
    def max_epochs(self):
        return 1

    @property
    def max_iters(self):
        return 0

    @property
    def epoch(self):
        return self._epoch

    @property
    def iter(self):
        return 0

    def run(self):
        runner = self.runner
        runner.call_hook('before_train')
        self._select()
        runner.call_hook('before_train_epoch')
        runner.call_hook('after_train_epoch')  # the checkpoint hook saves epoch_1.pth here
        self._epoch += 1
        runner.call_hook('after_train')
        if self.run_test:
            runner.test_loop.run()
        return runner.model

    def _select(self):
        runner = self.runner
        head = unwrap(runner.model).head
        dataset = build_dataset(runner, 'val_dataloader')
        if dataset is None or len(dataset) == 0:
            if self.search and head.cache_size:
                raise ValueError('searching alpha and beta needs a validation split, but val_dataloader is '
                                 'missing or empty; set train_cfg.search=False to keep the configured values')
            update_record(runner, selection_split='none', val_top1=None)
            return
        loader_cfg = runner.cfg.get('val_dataloader', {})
        with timed(runner, 'val_features'):
            feats, labels = extract_features(runner.model, dataset, batch_size=loader_cfg.get('batch_size', 64),
                                             num_workers=loader_cfg.get('num_workers', 0), desc='validation')
        device = head.clip_weights.device
        feats, labels = l2_normalize(feats[0]).to(device), labels.to(device)
        if self.search and head.cache_size:
            with timed(runner, 'search'):
                result = list(search_tip_hparams(feats, labels, head.clip_weights, head.cache_keys.detach(),
                                                 head.cache_labels, self.beta_grid, self.alpha_grid,
                                                 self.max_chunk_bytes))
            broadcast_object_list(result, src=0)  # every rank keeps rank 0's choice
            beta, alpha, top1 = result
            head.set_hparams(alpha, beta)
            selection = 'val'
            print_log(f'alpha/beta search on {len(dataset)} validation images: beta={beta:.4f} '
                      f'alpha={alpha:.4f} val top-1 {top1:.2f}%', logger='current')
        else:
            with torch.no_grad():
                top1 = topk_accuracy(head.logits(feats), labels)
            selection = 'none'
        update_record(runner, selection_split=selection, val_top1=top1, val_size=len(dataset),
                      search_scale=self.search_scale if self.search else None,
                      search_step=self.search_step if self.search else None)
