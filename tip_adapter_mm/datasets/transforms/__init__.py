"""Data transforms of the project's image pipelines (registered in mmpretrain's ``TRANSFORMS``)."""
from .load_image_rgb import LoadImageRGB, read_image_rgb

__all__ = ['LoadImageRGB', 'read_image_rgb']
