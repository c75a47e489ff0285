from .build_cache_hook import BuildCacheHook
from .results_hook import ResultsHook

__all__ = ['BuildCacheHook', 'ResultsHook']
