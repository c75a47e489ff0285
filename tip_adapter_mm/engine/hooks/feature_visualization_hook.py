import numpy as np
import torch
from mmpretrain.engine.hooks import VisualizationHook
from mmpretrain.registry import HOOKS
from PIL import Image


@HOOKS.register_module()
class FeatureVisualizationHook(VisualizationHook):
    """mmpretrain's ``VisualizationHook`` (``tools/test.py --show-dir / --show``) for loops that read features.

    The project's test loop feeds stored CLIP features, not images, to the model, so the batch holds [D]
    vectors where mmpretrain's hook expects [3, H, W] images. For such a batch the drawn image is the sample's
    file (``img_path``), decoded as the project's ``LoadImageRGB`` does (PIL, RGB, no EXIF rotation); image
    batches are drawn as mmpretrain draws them. Everything else (``interval``, ``out_dir``, ``show``,
    ``wait_time``, the file names) is mmpretrain's.

    Args:
        **kwargs: the arguments of mmpretrain's ``VisualizationHook`` (``enable``, ``interval``, ``show``,
            ``out_dir``, ``wait_time``, ...).
    """

    def _draw_samples(self, batch_idx, data_batch, data_samples, step=0):
        if self.enable is False:
            return
        inputs = data_batch['inputs']
        first = inputs[0] if len(inputs) else None
        if first is not None and getattr(first, 'dim', lambda: 3)() == 1:  # stored features: draw the files
            images = []
            for sample in data_samples:
                if 'img_path' not in sample:
                    raise ValueError('--show-dir / --show need the image files, but a test sample has no '
                                     'img_path')
                with Image.open(sample.img_path) as img:
                    images.append(np.array(img.convert('RGB')))  # a writable copy for torch.from_numpy
            data_batch = dict(data_batch, inputs=[torch.from_numpy(image).permute(2, 0, 1) for image in images])
        super()._draw_samples(batch_idx, data_batch, data_samples, step)

