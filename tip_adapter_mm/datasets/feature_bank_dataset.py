from typing import Optional, Sequence

import torch
from mmpretrain.registry import DATASETS
from mmpretrain.structures import DataSample

from .train_items import TrainItems


@DATASETS.register_module()
class FeatureBankDataset(TrainItems):
    """A split as stored CLIP features: each item is one (augmented) view of an image.

    For fine-tuning, the views are the ones encoded once while building the cache (``augment_epochs`` per
    image, raw features), filled in by :class:`~tip_adapter_mm.engine.BuildCacheHook` before training;
    :class:`~tip_adapter_mm.engine.FeatureTestLoop` fills one view per test image. Each time an
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
        super().__init__(dataset, seed, classes)
        self.features = None  # [V, N, D]
        self.labels = None  # N ints
        self.paths = None  # N image paths (None where an item has none)

    def set_features(self, view_features: torch.Tensor, labels: torch.Tensor):
        """Fill the bank with raw features [V, N, D] of the N images of ``dataset`` and their labels."""
        if view_features.dim() != 3 or view_features.shape[1] != len(self.dataset):
            raise ValueError(f'expected view features of shape [V, {len(self.dataset)}, D], got '
                             f'{tuple(view_features.shape)}')
        self.features, self.labels = view_features.cpu(), [int(label) for label in labels]
        self.paths = [self.dataset.get_data_info(i).get('img_path') for i in range(len(self.dataset))]

    def __getitem__(self, idx: int) -> dict:
        if self.features is None:
            raise RuntimeError('the feature bank is empty: BuildCacheHook fills it before training '
                               '(is it in custom_hooks?)')
        view = self.item_seed(idx) % self.features.shape[0]
        item = self.indices[idx]
        sample = DataSample().set_gt_label(self.labels[item])
        if self.paths[item] is not None:
            sample.set_metainfo(dict(img_path=self.paths[item], sample_idx=item))
        return dict(inputs=self.features[view, item], data_samples=sample)
