from .cache_head import CacheHead
from .clip_backbone import CLIPBackbone, resolve_model_name
from .clip_data_preprocessor import CLIPDataPreprocessor
from .meta_adapter_head import MetaAdapterHead

__all__ = ['CLIPBackbone', 'CacheHead', 'CLIPDataPreprocessor', 'MetaAdapterHead', 'resolve_model_name']
