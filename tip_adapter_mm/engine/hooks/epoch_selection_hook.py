import os
import os.path as osp
from typing import Dict, List, Optional

import torch
from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmpretrain.registry import HOOKS

from ...compat import ATOMIC_BACKEND_ARGS
from ...functional import topk_accuracy
from ...protocol import EPOCH_RULES, epoch_rule_label, keeps_epoch
from ...utils.checkpoint import safe_load
from ..features import unwrap
from ..record import update_record


def selected_checkpoint_name(split: str, epoch: int) -> str:
    """The file of the selected epoch, named as mmengine's ``CheckpointHook(save_best=...)`` names its best."""
    return f'best_{split}_top1_epoch_{epoch}.pth'


@HOOKS.register_module()
class EpochSelectionHook(Hook):
    """Choose which epoch's trained head parameters (Tip-Adapter-F: the cache keys) a run keeps.

    After every epoch (and before the checkpoint hook saves it) the head is scored on the stored features
    of the selection split, with the alpha and beta it trains with. Rules:

    - ``best_val`` (default): the epoch with the best validation top-1; ties keep the later epoch.
    - ``last``: the last epoch (validation accuracy is still logged).
    - ``legacy_test``: the official behaviour, the epoch with the best **test** accuracy (strictly better
      replaces, so ties keep the earlier epoch). Test information then leaks into the result, so it is
      only available by this name and ``results.json`` says ``"selection_split": "test (legacy)"``.

    mmengine's ``CheckpointHook(save_best=...)`` cannot express these rules (it keeps the earlier epoch on
    ties and scores after the epoch's checkpoint is saved, so a resumed run would miss that epoch's score),
    hence this hook. Each epoch's top-1 goes to the visualizer (``<split>/top1``, e.g.
    ``scalars.json``, TensorBoard when configured).

    What it keeps on disk: a newly selected epoch's model state is saved as
    ``best_<split>_top1_epoch_<N>.pth`` (model only, no optimizer; the previous one is removed), so with the
    checkpoint hook's ``max_keep_ckpts=1`` a run keeps the last epoch (for ``--resume``), the selected epoch
    and ``final.pth``. The selection state in every checkpoint is a few numbers (rule, history, selected epoch
    and its top-1); the selected parameters are held in memory, and a resumed run reads them back from the
    selected epoch's file. The ``last`` rule writes no file: the last epoch is the selected one.

    The loop gives it the selection split's features (:meth:`set_features`) and calls :meth:`resume` when it
    continues a checkpoint, so a resumed run selects exactly as an uninterrupted one.

    Args:
        rule (str): 'best_val', 'last' or 'legacy_test'.
    """

    priority = 'ABOVE_NORMAL'  # before CheckpointHook, so the saved state includes this epoch

    def __init__(self, rule: str = 'best_val'):
        if rule not in EPOCH_RULES:
            raise ValueError(f'epoch selection rule must be one of {tuple(EPOCH_RULES)}, got {rule!r}')
        self.rule = rule
        self.history: List[float] = []
        self.best_epoch: Optional[int] = None
        self.best_top1: Optional[float] = None
        self.best_state: Optional[Dict[str, torch.Tensor]] = None  # in memory only: the selected parameters
        self.features = None  # (features, labels) of the selection split
        self._loaded = None  # the selection state of the last loaded checkpoint

    @property
    def split(self) -> str:
        return EPOCH_RULES[self.rule]

    @property
    def selection_split(self) -> str:
        return epoch_rule_label(self.rule)

    def _selected_file(self, runner, epoch: Optional[int] = None) -> str:
        epoch = self.best_epoch if epoch is None else epoch
        if self.rule == 'last':
            return osp.join(runner.work_dir, f'epoch_{epoch}.pth')
        return osp.join(runner.work_dir, selected_checkpoint_name(self.split, epoch))

    def after_train_epoch(self, runner):
        head = unwrap(runner.model).head
        data = self.features
        if data is None:
            raise ValueError(f'epoch selection rule {self.rule!r} needs a {self.split} split, but '
                             f'{self.split}_dataloader is missing or empty')
        with torch.no_grad():
            top1 = topk_accuracy(head.logits(data[0]), data[1])
        epoch = runner.epoch + 1
        self.history.append(top1)
        runner.visualizer.add_scalars({f'{self.split}/top1': top1}, step=epoch)
        if keeps_epoch(self.rule, self.best_top1, top1):
            previous = self.best_epoch
            self.best_epoch, self.best_top1 = epoch, top1
            self.best_state = {name: p.detach().clone().cpu() for name, p in head.named_parameters()
                               if p.requires_grad}
            if self.rule != 'last':
                self._save_selected(runner, previous)
        print_log(f'epoch {epoch}: {self.split} top-1 {top1:.2f}% (kept: epoch {self.best_epoch}, '
                  f'{self.best_top1:.2f}%)', logger='current')
        update_record(runner, epoch_top1=list(self.history), epoch_top1_split=self.split)

    def _save_selected(self, runner, previous: Optional[int]):
        name = osp.basename(self._selected_file(runner))
        runner.save_checkpoint(runner.work_dir, name, save_optimizer=False, save_param_scheduler=False,
                               backend_args=ATOMIC_BACKEND_ARGS)
        if previous is not None and previous != self.best_epoch and is_main_process():
            old = self._selected_file(runner, previous)
            if osp.isfile(old):
                os.remove(old)

    def after_train(self, runner):
        if self.best_epoch is None:
            return
        path = self._selected_file(runner)
        params = dict(unwrap(runner.model).head.named_parameters())
        with torch.no_grad():
            for name, value in self.best_state.items():
                params[name].copy_(value.to(params[name].device))
        update_record(runner, selected_epoch=self.best_epoch, selected_epoch_top1=self.best_top1,
                      epoch_selection=self.rule, selection_split=self.selection_split,
                      selected_checkpoint=osp.basename(path))
        runner.visualizer.add_scalars({'selected_epoch': self.best_epoch}, step=len(self.history))

    def before_save_checkpoint(self, runner, checkpoint):
        checkpoint.setdefault('meta', {})['epoch_selection'] = dict(
            rule=self.rule, history=list(self.history), best_epoch=self.best_epoch, best_top1=self.best_top1)

    def after_load_checkpoint(self, runner, checkpoint):
        state = checkpoint.get('meta', {}).get('epoch_selection')
        self._loaded = state if state and state.get('rule') == self.rule else None

    def set_features(self, features):
        """The (features, labels) of the selection split, encoded once by the loop before training."""
        self.features = features

    def resume(self, runner):
        """Continue the selection of the resumed checkpoint (called by the loop when it resumes an epoch)."""
        state, self._loaded = self._loaded, None
        if state:
            self.history = list(state['history'])
            self.best_epoch, self.best_top1 = state['best_epoch'], state['best_top1']
            if self.best_epoch is None:
                return
            path = self._selected_file(runner)
            if not osp.isfile(path):
                raise FileNotFoundError(
                    f"resuming needs the selected epoch's checkpoint '{path}' (epoch {self.best_epoch}, "
                    f'{self.split} top-1 {self.best_top1:.2f}%), which this run wrote; it is missing')
            # the selected epoch's parameters, read back from its file (the checkpoints hold no copy)
            state = safe_load(path, what='selected-epoch checkpoint')['state_dict']
            self.best_state = {name: state[f'head.{name}'] for name, p in
                               unwrap(runner.model).head.named_parameters() if p.requires_grad}
