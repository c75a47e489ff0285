from .cache_head import CacheHead
from .clip_backbone import CLIPBackbone, resolve_model_name
from .clip_data_preprocessor import CLIPDataPreprocessor

__all__ = ['CLIPBackbone', 'CacheHead', 'CLIPDataPreprocessor', 'resolve_model_name']
