from .features import AugmentedViews, encode_dataset, extract_features, gather_in_order
from .hooks import BuildCacheHook, EpochSelectionHook, RunCheckHook, ResultsHook
from .loops import FeatureTestLoop, FinetuneLoop, TrainingFreeLoop
from .runner import FewShotRunner

__all__ = ['FewShotRunner', 'BuildCacheHook', 'EpochSelectionHook', 'RunCheckHook', 'ResultsHook', 'TrainingFreeLoop',
           'FinetuneLoop', 'FeatureTestLoop', 'extract_features', 'encode_dataset', 'AugmentedViews',
           'gather_in_order']
