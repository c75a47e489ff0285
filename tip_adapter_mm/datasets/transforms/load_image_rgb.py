"""Image decoding as the published pipelines do it: ``PIL.Image.open(path).convert('RGB')``.

Every number Tip-Adapter, Tip-Adapter-F and Meta-Adapter published was computed on images read by Dassl's
``read_image`` (``Image.open(path).convert("RGB")``) or torchvision's ``pil_loader`` (the same on an open file).
mmcv's ``LoadImageFromFile(imdecode_backend='pillow')`` decodes differently in two ways:

- it applies the EXIF orientation tag (``ImageOps.exif_transpose``), so an EXIF-rotated photo comes out
  rotated (and transposed in shape) relative to the reference;
- it pastes an ``LA`` (grey + alpha) image on a coloured canvas (124, 117, 104) where ``convert('RGB')``
  simply drops the alpha channel.

:class:`LoadImageRGB` decodes exactly like the reference and otherwise keeps mmcv's output convention
(a uint8 HxWx3 array in BGR channel order, the data preprocessor's ``to_rgb=True`` turns it back), so on
every image mmcv's pillow backend decodes like the reference (plain RGB, greyscale, RGBA, palette, CMYK
without an EXIF orientation) the two give the same array, and the later transforms of the pipeline see
exactly what they saw before.
"""
import io
from typing import Optional, Union

import mmengine.fileio as fileio
import numpy as np
from mmcv.transforms import BaseTransform
from mmpretrain.registry import TRANSFORMS


def read_image_rgb(content: Union[bytes, str]) -> np.ndarray:
    """Decode an image file (its bytes, or a local path) as the reference loaders do, in BGR order.

    Returns:
        np.ndarray: uint8 array of shape (H, W, 3), channels B, G, R (a reversed view of PIL's RGB array,
        as mmcv's pillow backend returns it). No EXIF orientation is applied and an alpha channel is
        dropped, not composited.
    """
    from PIL import Image
    with (open(content, 'rb') if isinstance(content, str) else io.BytesIO(content)) as buff:
        with Image.open(buff) as img:
            rgb = img.convert('RGB')
    return np.array(rgb)[:, :, ::-1]


@TRANSFORMS.register_module()
class LoadImageRGB(BaseTransform):
    """Load an image from file as Dassl's ``read_image`` / torchvision's ``pil_loader`` do.

    A drop-in replacement of ``LoadImageFromFile(imdecode_backend='pillow')`` that decodes with
    ``PIL.Image.open(...).convert('RGB')``: no EXIF orientation, no alpha compositing (see the module doc).

    Required Keys:

    - img_path (or img: a sample that arrives decoded, without img_path, passes unchanged, as from
      mmpretrain's ``ImageClassificationInferencer``, which decodes its inputs itself (``mmcv.imread``, BGR)
      and removes only ``LoadImageFromFile`` from the config's test pipeline)

    Modified Keys:

    - img (uint8 HxWx3, BGR; float32 with ``to_float32``)
    - img_shape
    - ori_shape

    Args:
        to_float32 (bool): return a float32 array instead of uint8. Defaults to False.
        ignore_empty (bool): return None (the sample is dropped) instead of raising when the file is missing
            or cannot be decoded. Defaults to False.
        backend_args (dict, optional): the file backend of :func:`mmengine.fileio.get` (local files by
            default).

    Raises:
        FileNotFoundError: the file does not exist (the message names the path).
        OSError: the file cannot be decoded as an image (the message names the path).
    """

    def __init__(self, to_float32: bool = False, ignore_empty: bool = False,
                 backend_args: Optional[dict] = None) -> None:
        self.to_float32 = to_float32
        self.ignore_empty = ignore_empty
        self.backend_args = None if backend_args is None else dict(backend_args)

    def transform(self, results: dict) -> Optional[dict]:
        if results.get('img_path') is None and results.get('img') is not None:
            return results  # already decoded by the caller (mmpretrain's inferencers)
        filename = results['img_path']
        try:
            content = fileio.get(filename, backend_args=self.backend_args)
        except Exception as e:  # noqa: BLE001
            if self.ignore_empty:
                return None
            if isinstance(e, FileNotFoundError):
                raise FileNotFoundError(f"image file '{filename}' not found") from e
            raise OSError(f"cannot read image file '{filename}' ({type(e).__name__}: {e})") from e
        try:
            img = read_image_rgb(content)
        except Exception as e:  # noqa: BLE001  (PIL raises OSError, ValueError, SyntaxError, ...)
            if self.ignore_empty:
                return None
            raise OSError(f"cannot decode image '{filename}' ({type(e).__name__}: {e})") from e
        if self.to_float32:
            img = img.astype(np.float32)
        results['img'] = img
        results['img_shape'] = img.shape[:2]
        results['ori_shape'] = img.shape[:2]
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(to_float32={self.to_float32}, ignore_empty={self.ignore_empty}, '
                f'backend_args={self.backend_args})')
