from .features import AugmentedViews, extract_features, gather_in_order
from .hooks import BuildCacheHook, EpochSelectionHook, RunCheckHook, ResultsHook
from .loops import FinetuneLoop, TrainingFreeLoop
from .runner import FewShotRunner

__all__ = ['FewShotRunner', 'BuildCacheHook', 'EpochSelectionHook', 'RunCheckHook', 'ResultsHook', 'TrainingFreeLoop', 'FinetuneLoop', 'extract_features', 'AugmentedViews',
           'gather_in_order']
