from .build_cache_hook import BuildCacheHook
from .epoch_selection_hook import EpochSelectionHook
from .feature_visualization_hook import FeatureVisualizationHook
from .run_check_hook import RunCheckHook
from .results_hook import ResultsHook

__all__ = ['BuildCacheHook', 'EpochSelectionHook', 'FeatureVisualizationHook', 'RunCheckHook', 'ResultsHook']
