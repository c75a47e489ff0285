"""Python APIs over mmpretrain's: classifying image files with a trained adapter (:func:`predict_files`, the
implementation of ``tools/infer.py``). Not imported by ``tip_adapter_mm`` itself (it registers nothing)."""
from .export import export_adapter, load_adapter
from .inference import IMAGE_EXTENSIONS, build_inferencer, collect_images, is_image_file, predict_files

__all__ = ['IMAGE_EXTENSIONS', 'build_inferencer', 'collect_images', 'export_adapter', 'is_image_file',
           'load_adapter', 'predict_files']
