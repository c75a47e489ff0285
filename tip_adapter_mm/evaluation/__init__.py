from .base_novel_accuracy import BaseNovelAccuracy
from .topk_accuracy import TopKAccuracy

__all__ = ['BaseNovelAccuracy', 'TopKAccuracy']
