from typing import Sequence

from mmengine.runner import BaseLoop
from mmpretrain.registry import LOOPS

from ...functional import tip_search_grids
from ...protocol import get_protocol
from ..features import unwrap
from ..hooks.build_cache_hook import find_cache_hook
from ..record import update_record
from ..selection import select_alpha_beta


@LOOPS.register_module()
class TrainingFreeLoop(BaseLoop):
    """Training-free Tip-Adapter: build the cache, choose alpha and beta on validation, save, test.

    1. ``before_train`` hooks fill the head (:class:`~tip_adapter_mm.engine.BuildCacheHook`).
    2. The selection split of ``hp_selection`` (:mod:`tip_adapter_mm.protocol`) is encoded once and alpha,
       beta are grid-searched on its features with the official grid and tie rule
       (:func:`~tip_adapter_mm.functional.search_tip_hparams`). The test split is never used for any choice,
       except under the explicitly named ``legacy_test``.
    3. One "epoch" ends, so the checkpoint hook saves the adapter state (``epoch_1.pth``).
    4. The test loop runs and the results hook writes ``results.json``.

    Args:
        runner: the runner.
        dataloader: the train dataloader (or its config); the cache hook reads the same dataset config.
        search (bool): whether the method has alpha and beta to search (False for zero-shot CLIP); the
            protocol ``hp_selection='none'`` also keeps the head's values. Defaults to True.
        search_scale (sequence of float): largest [beta, alpha] of the grids (endpoint excluded).
        search_step (sequence of int): number of [beta, alpha] grid values. Defaults to (200, 20).
        run_test (bool): evaluate the test split after saving. Defaults to True.
        max_chunk_bytes (int): memory bound of one chunk of the search.
        hp_selection (str): the selection protocol, :data:`tip_adapter_mm.protocol.HP_SELECTION`
            ('full_val' by default).
    """

    def __init__(self, runner, dataloader, search: bool = True, search_scale: Sequence[float] = (7., 3.),
                 search_step: Sequence[int] = (200, 20), run_test: bool = True,
                 max_chunk_bytes: int = 1 << 28, hp_selection: str = 'full_val'):
        self.protocol = get_protocol(hp_selection)
        super().__init__(runner, dataloader)
        self.hp_selection = hp_selection
        self.search = search and self.protocol.search
        find_cache_hook(runner).val_mode = self.protocol.val_mode
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
        cache_hook = find_cache_hook(runner)
        # the cache is built: its augmented views ([V, N, D], 625 MiB at ImageNet's 16k x 10 views) are not used
        # again in a training-free run
        cache_hook.view_features = cache_hook.view_labels = None
        search = self.search and unwrap(runner.model).head.cache_size > 0  # no cache (zero-shot): no search
        features = cache_hook.features(runner, self.protocol.split)
        select_alpha_beta(runner, features, search, self.beta_grid, self.alpha_grid, self.max_chunk_bytes,
                          self.protocol.split)
        update_record(runner, selection_split=self.protocol.label if search else 'none',
                      hp_selection=self.hp_selection, search_scale=self.search_scale if search else None,
                      search_step=self.search_step if search else None)
        runner.call_hook('before_train_epoch')
        runner.call_hook('after_train_epoch')  # the checkpoint hook saves epoch_1.pth here
        self._epoch += 1
        runner.call_hook('after_train')
        if self.run_test:
            runner.test_loop.run()
        return runner.model
