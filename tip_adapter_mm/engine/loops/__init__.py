from .training_free_loop import TrainingFreeLoop

__all__ = ['TrainingFreeLoop']
