"""Python APIs: the methods on CLIP features without a runner (:class:`TipAdapter`, :class:`MetaAdapter`,
:func:`zero_shot_weights`, :func:`load`), classifying image files with a trained adapter (:func:`predict_files`,
the implementation of ``tools/infer.py``), and portable adapter files (:func:`export_adapter`,
:func:`load_adapter`). Not imported by ``tip_adapter_mm`` itself (it registers nothing)."""
from .adapters import MetaAdapter, TipAdapter, encode_images, load, zero_shot_weights
from .export import export_adapter, load_adapter
from .inference import IMAGE_EXTENSIONS, build_inferencer, collect_images, is_image_file, predict_files

__all__ = ['IMAGE_EXTENSIONS', 'MetaAdapter', 'TipAdapter', 'build_inferencer', 'collect_images', 'encode_images',
           'export_adapter', 'is_image_file', 'load', 'load_adapter', 'predict_files', 'zero_shot_weights']
