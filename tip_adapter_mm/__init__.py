"""tip_adapter_mm: Tip-Adapter, Tip-Adapter-F and Meta-Adapter for CLIP as an mmpretrain plugin.

Importing the package registers its modules into mmpretrain's registries (configs do it through
``custom_imports``) and changes nothing else: the mmengine shims of :mod:`tip_adapter_mm.compat` are applied
for the duration of a run by the hook the configs name, and the demo's tiny CLIP is registered with
open_clip only when a config asks for it.
"""
__version__ = '0.1.0'

from . import datasets, engine, evaluation, models  # noqa: E402,F401  (registration)
