"""tip_adapter_mm: Tip-Adapter, Tip-Adapter-F and Meta-Adapter for CLIP as an mmpretrain plugin.

Importing the package registers its modules into mmpretrain's registries (configs do it through
``custom_imports``) and applies the compatibility shims of :mod:`tip_adapter_mm.compat`.
"""
from . import compat

compat.install()

from . import datasets, engine, evaluation, models  # noqa: E402,F401  (registration)
from .demo import register_tiny_clip  # noqa: E402

register_tiny_clip()

__version__ = '0.1.0'
