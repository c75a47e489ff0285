from .build_cache_hook import BuildCacheHook
from .epoch_selection_hook import EpochSelectionHook
from .mmengine_compat_hook import MMEngineCompatHook
from .results_hook import ResultsHook

__all__ = ['BuildCacheHook', 'EpochSelectionHook', 'MMEngineCompatHook', 'ResultsHook']
