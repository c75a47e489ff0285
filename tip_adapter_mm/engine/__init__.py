from .features import AugmentedViews, extract_features, gather_in_order
from .hooks import BuildCacheHook, ResultsHook
from .loops import TrainingFreeLoop

__all__ = ['BuildCacheHook', 'ResultsHook', 'TrainingFreeLoop', 'extract_features', 'AugmentedViews',
           'gather_in_order']
