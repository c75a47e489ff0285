from typing import List, Optional, Sequence

import torch
from mmpretrain.registry import DATASETS
from mmpretrain.structures import DataSample

from ..utils.rng import mix64


def class_indices(dataset, classes: Optional[Sequence[int]]) -> List[int]:
    """Indices of the items of ``dataset`` whose label is in ``classes`` (all items when None)."""
    if classes is None:
        return list(range(len(dataset)))
    keep = {int(c) for c in classes}
    found = [i for i in range(len(dataset)) if int(dataset.get_data_info(i)['gt_label']) in keep]
    if not found:
        raise ValueError(f'no training image belongs to the classes {sorted(keep)}')
    return found


@DATASETS.register_module()
class FeatureBankDataset:
    """The few-shot train split as stored CLIP features: each item is one augmented view of an image.

    The views are the ones encoded once while building the cache (``augment_epochs`` per image, raw
    features), filled in by :class:`~tip_adapter_mm.engine.BuildCacheHook` before training. Each time an
    image is drawn, one of its stored views is picked, seeded by (seed, epoch, index), so the choice does
    not depend on the number of processes and a resumed run draws the same views as an uninterrupted one.
    Training from it needs no CLIP forward pass.

    Args:
        dataset (dict): config of the image dataset (the train split), as for the image data path.
        seed (int, optional): view-sampling seed; defaults to the image dataset's few-shot seed.
        classes (list[int], optional): keep the images of these classes only (e.g. the base classes that
            Meta-Adapter is meta-trained on); the bank still holds every image's views.
    """

    def __init__(self, dataset: dict, seed: Optional[int] = None, classes: Optional[Sequence[int]] = None):
        self.dataset = DATASETS.build(dataset) if isinstance(dataset, dict) else dataset
        self.seed = seed if seed is not None else getattr(self.dataset, 'seed', 0)
        self.indices = class_indices(self.dataset, classes)
        self.features = None  # [V, N, D]
        self.labels = None  # N ints
        self.epoch = 0

    @property
    def metainfo(self) -> dict:
        return self.dataset.metainfo

    def __len__(self) -> int:
        return len(self.indices)

    def get_data_info(self, idx: int) -> dict:
        return self.dataset.get_data_info(self.indices[idx])

    def set_features(self, view_features: torch.Tensor, labels: torch.Tensor):
        """Fill the bank with raw features [V, N, D] of the N images of ``dataset`` and their labels."""
        if view_features.dim() != 3 or view_features.shape[1] != len(self.dataset):
            raise ValueError(f'expected view features of shape [V, {len(self.dataset)}, D], got '
                             f'{tuple(view_features.shape)}')
        self.features, self.labels = view_features.cpu(), [int(label) for label in labels]

    def set_epoch(self, epoch: int):
        self.epoch = epoch

    def __getitem__(self, idx: int) -> dict:
        if self.features is None:
            raise RuntimeError('the feature bank is empty: BuildCacheHook fills it before training '
                               '(is it in custom_hooks?)')
        view = mix64((self.seed * 1_000_003 + self.epoch) * 1_000_003 + idx) % self.features.shape[0]
        item = self.indices[idx]
        return dict(inputs=self.features[view, item], data_samples=DataSample().set_gt_label(self.labels[item]))
