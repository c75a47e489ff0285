from .cache_head import CacheHead
from .clip_backbone import CLIPBackbone, resolve_model_name

__all__ = ['CLIPBackbone', 'CacheHead', 'resolve_model_name']
