import torch
from mmpretrain.models.utils import ClsDataPreprocessor
from mmpretrain.registry import MODELS


@MODELS.register_module()
class CLIPDataPreprocessor(ClsDataPreprocessor):
    """``ClsDataPreprocessor`` that also accepts stored features.

    Image batches are normalised as usual. A batch of stored CLIP features (a [B, D] tensor, or a list of
    [D] tensors, e.g. from :class:`~tip_adapter_mm.datasets.FeatureBankDataset`) is only moved to the
    device, and :class:`~tip_adapter_mm.models.CLIPBackbone` passes it through, so the same model trains on
    images or on features.

    Args:
        **kwargs: passed to :class:`mmpretrain.models.utils.ClsDataPreprocessor`.
    """

    def forward(self, data: dict, training: bool = False) -> dict:
        inputs = data['inputs']
        if isinstance(inputs, (list, tuple)) and inputs and inputs[0].dim() == 1:
            inputs = torch.stack(list(inputs))
        if isinstance(inputs, torch.Tensor) and inputs.dim() == 2:
            samples = data.get('data_samples')
            if samples is not None and self._device.type != 'cpu':  # moving samples to the CPU is a no-op
                samples = self.cast_data(samples)
            return dict(inputs=self.cast_data(inputs).float(), data_samples=samples)
        return super().forward(data, training)
