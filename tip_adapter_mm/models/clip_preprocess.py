"""A backbone's preprocessing and feature size, read from open_clip's registries (no model built, no download).

:func:`clip_preprocess` is what the configs' "from the backbone" values are (pipeline sizes and interpolation,
the data preprocessor's mean and std, the head's ``feat_dim``): :mod:`tip_adapter_mm.settings` puts them into a
config, and :class:`~tip_adapter_mm.models.CLIPBackbone` exposes the same values.
"""
from dataclasses import dataclass
from typing import Optional, Tuple, Union

from .clip_backbone import _is_local_file, resolve_model_name


@dataclass(frozen=True)
class CLIPPreprocess:
    """What open_clip's ``create_model_and_transforms`` would use for a model and its weights.

    Args:
        model_name (str): the resolved open_clip model name (e.g. ``RN50-quickgelu``).
        image_size (int or tuple): the input size of the image tower (``vision_cfg.image_size``), an int for
            square inputs, else ``(height, width)``.
        mean (tuple): the per-channel mean in [0, 1], RGB.
        std (tuple): the per-channel std in [0, 1], RGB.
        interpolation (str): the resize interpolation (``'bicubic'``, ``'bilinear'``, ...).
        resize_mode (str): open_clip's resize mode (``'shortest'``: resize the short edge, then center crop;
            ``'longest'``, ``'squash'``).
        feat_dim (int): the size of the joint image-text embedding (``embed_dim``).
    """
    model_name: str
    image_size: Union[int, Tuple[int, int]]
    mean: Tuple[float, float, float]
    std: Tuple[float, float, float]
    interpolation: str
    resize_mode: str
    feat_dim: int


def clip_preprocess(model_name: str, pretrained: Optional[str] = 'openai') -> CLIPPreprocess:
    """The preprocessing and feature size of open_clip model ``model_name`` with weights ``pretrained``.

    As open_clip's factory does: its defaults (``PreprocessCfg``: OpenAI's mean and std, bicubic, shortest-edge
    resize), overlaid with the model config's ``preprocess_cfg`` if it has one, then with the pretrained tag's
    config (``open_clip.get_pretrained_cfg``: mean, std, interpolation, resize_mode); the size is the model
    config's ``vision_cfg.image_size``. A local-file ``pretrained`` (or None, random weights) uses the model
    config's values. Only the registries are read: nothing is built or downloaded.

    Args:
        model_name (str): an open_clip name (``ViT-B-16``), an OpenAI name (``ViT-B/16``) or the project's
            ``tiny-clip`` (resolved by :func:`~tip_adapter_mm.models.clip_backbone.resolve_model_name`,
            ``-quickgelu`` for OpenAI weights).
        pretrained (str, optional): an open_clip tag, a local checkpoint file or None.

    Returns:
        CLIPPreprocess: the values.

    Raises:
        ValueError: an unknown model name (with close names), or a tag open_clip does not know for the model
            (with its tags).
    """
    import open_clip
    from open_clip.transform import PreprocessCfg, merge_preprocess_dict
    from dataclasses import asdict

    name = resolve_model_name(model_name, pretrained)
    model_cfg = open_clip.get_model_config(name) or {}
    cfg = merge_preprocess_dict(asdict(PreprocessCfg()), model_cfg.get('preprocess_cfg') or {})
    if pretrained and not _is_local_file(pretrained):
        tag_cfg = open_clip.get_pretrained_cfg(name, pretrained)
        if not tag_cfg:
            tags = [t for m, t in open_clip.list_pretrained() if m == name]
            raise ValueError(f"model.backbone.pretrained='{pretrained}' is not an open_clip tag of model '{name}' "
                             f'(its tags: {tags or "none"}; or give a local checkpoint file)')
        cfg = merge_preprocess_dict(cfg, tag_cfg)
    size = (model_cfg.get('vision_cfg') or {}).get('image_size', cfg['size'])
    if isinstance(size, (list, tuple)):
        size = int(size[0]) if len(size) == 2 and size[0] == size[1] else tuple(int(s) for s in size)
    if 'embed_dim' not in model_cfg:
        raise ValueError(f"open_clip's config of model '{name}' has no embed_dim")
    return CLIPPreprocess(model_name=name, image_size=size if isinstance(size, tuple) else int(size),
                          mean=tuple(float(m) for m in cfg['mean']), std=tuple(float(s) for s in cfg['std']),
                          interpolation=str(cfg['interpolation']), resize_mode=str(cfg['resize_mode']),
                          feat_dim=int(model_cfg['embed_dim']))
