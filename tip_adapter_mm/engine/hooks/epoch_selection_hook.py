from typing import Dict, List, Optional

import torch
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmpretrain.registry import HOOKS

from ...functional import topk_accuracy
from ...protocol import EPOCH_RULES, epoch_rule_label, keeps_epoch
from ..features import unwrap
from ..record import update_record



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

    The loop gives it the selection split's features (:meth:`set_features`). The selection state is stored
    in every checkpoint, and a resumed run (the loop calls :meth:`resume`) selects exactly as an
    uninterrupted one. After training the selected parameters are copied back into the head.

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
        self.best_state: Optional[Dict[str, torch.Tensor]] = None  # the trainable head parameters
        self.features = None  # (features, labels) of the selection split
        self._loaded = None  # the selection state of the last loaded checkpoint

    @property
    def split(self) -> str:
        return EPOCH_RULES[self.rule]

    @property
    def selection_split(self) -> str:
        return epoch_rule_label(self.rule)

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
        if keeps_epoch(self.rule, self.best_top1, top1):
            self.best_epoch, self.best_top1 = epoch, top1
            self.best_state = {name: p.detach().clone().cpu() for name, p in head.named_parameters()
                               if p.requires_grad}
        print_log(f'epoch {epoch}: {self.split} top-1 {top1:.2f}% (kept: epoch {self.best_epoch}, '
                  f'{self.best_top1:.2f}%)', logger='current')
        update_record(runner, epoch_top1=list(self.history), epoch_top1_split=self.split)

    def after_train(self, runner):
        if self.best_state is None:
            return
        params = dict(unwrap(runner.model).head.named_parameters())
        with torch.no_grad():
            for name, value in self.best_state.items():
                params[name].copy_(value.to(params[name].device))
        update_record(runner, selected_epoch=self.best_epoch, selected_epoch_top1=self.best_top1,
                      epoch_selection=self.rule, selection_split=self.selection_split)

    def before_save_checkpoint(self, runner, checkpoint):
        checkpoint.setdefault('meta', {})['epoch_selection'] = dict(
            rule=self.rule, history=list(self.history), best_epoch=self.best_epoch, best_top1=self.best_top1,
            best_state=self.best_state)

    def after_load_checkpoint(self, runner, checkpoint):
        state = checkpoint.get('meta', {}).get('epoch_selection')
        self._loaded = state if state and state.get('rule') == self.rule else None

    def set_features(self, features):
        """The (features, labels) of the selection split, encoded once by the loop before training."""
        self.features = features

    def resume(self):
        """Continue the selection of the resumed checkpoint (called by the loop when it resumes an epoch)."""
        state, self._loaded = self._loaded, None
        if state:
            self.history = list(state['history'])
            self.best_epoch, self.best_top1 = state['best_epoch'], state['best_top1']
            self.best_state = state['best_state']
