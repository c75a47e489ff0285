"""The persistent feature store: every image (and augmented view) is encoded once per backbone and pipeline.

Pure torch / safetensors / filelock / json (no mmengine), so any loop or tool can use it. See
:mod:`tip_adapter_mm.features.store` for the on-disk layout.
"""
from .keys import (FORMAT_VERSION, FileHashCache, ItemId, backbone_identity, canonical, canonical_json,
                   pipeline_identity, view_seed)
from .store import (DEFAULT_ROOT, Encoded, Entry, FeatureStore, FeatureStoreWarning, Namespace,
                    encode_missing)

__all__ = [
    'DEFAULT_ROOT', 'FORMAT_VERSION', 'Encoded', 'Entry', 'FeatureStore', 'FeatureStoreWarning', 'FileHashCache',
    'ItemId', 'Namespace', 'backbone_identity', 'canonical', 'canonical_json', 'encode_missing',
    'pipeline_identity', 'view_seed'
]
