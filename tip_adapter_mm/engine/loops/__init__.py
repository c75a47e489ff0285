from .finetune_loop import FinetuneLoop
from .training_free_loop import TrainingFreeLoop

__all__ = ['TrainingFreeLoop', 'FinetuneLoop']
