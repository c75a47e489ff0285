from .build_cache_hook import BuildCacheHook
from .epoch_selection_hook import EpochSelectionHook
from .run_check_hook import RunCheckHook
from .results_hook import ResultsHook

__all__ = ['BuildCacheHook', 'EpochSelectionHook', 'RunCheckHook', 'ResultsHook']
