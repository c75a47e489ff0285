from .features import AugmentedViews, extract_features, gather_in_order
from .hooks import BuildCacheHook, EpochSelectionHook, MMEngineCompatHook, ResultsHook
from .loops import FinetuneLoop, TrainingFreeLoop

__all__ = ['BuildCacheHook', 'EpochSelectionHook', 'MMEngineCompatHook', 'ResultsHook', 'TrainingFreeLoop', 'FinetuneLoop', 'extract_features', 'AugmentedViews',
           'gather_in_order']
