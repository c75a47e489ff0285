"""Offline demo assets: scikit-learn's digits as an image-folder dataset and a tiny pretrained CLIP.

Importing this package is cheap: it registers the ``tiny-clip`` config with open_clip only when asked
(:func:`register_tiny_clip`), and nothing is written or trained until :func:`ensure_demo_assets`,
:func:`prepare_digits` or :func:`pretrain_tiny_clip` is called.
"""
from .digits import (DIGIT_CLASSNAMES, DIGIT_IMAGE_SIZE, DIGIT_SPLIT_SIZES, DIGIT_SPLITS, DIGIT_TEMPLATES,
                     digit_splits, is_digits_complete, prepare_digits, render_digit)
from .tiny_clip import (CLIP_MEAN, CLIP_STD, DEFAULT_CAPTION_NOISE, DIGIT_CONFUSIONS, TINY_CLIP_CONFIG,
                        TINY_CLIP_NAME, ensure_demo_assets, pretrain_tiny_clip, register_tiny_clip)

__all__ = [
    'DIGIT_CLASSNAMES', 'DIGIT_TEMPLATES', 'DIGIT_SPLITS', 'DIGIT_SPLIT_SIZES', 'DIGIT_IMAGE_SIZE',
    'digit_splits', 'is_digits_complete', 'prepare_digits', 'render_digit', 'TINY_CLIP_NAME',
    'TINY_CLIP_CONFIG', 'CLIP_MEAN', 'CLIP_STD', 'DEFAULT_CAPTION_NOISE', 'DIGIT_CONFUSIONS',
    'register_tiny_clip', 'pretrain_tiny_clip', 'ensure_demo_assets'
]
