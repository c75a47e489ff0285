from .feature_test_loop import FeatureTestLoop
from .finetune_loop import FinetuneLoop
from .training_free_loop import TrainingFreeLoop

__all__ = ['TrainingFreeLoop', 'FinetuneLoop', 'FeatureTestLoop']
