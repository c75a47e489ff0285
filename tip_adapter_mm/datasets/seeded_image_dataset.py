from typing import Optional, Sequence

from mmpretrain.registry import DATASETS

from ..utils.rng import mix64, seeded_rng
from .feature_bank_dataset import class_indices


@DATASETS.register_module()
class SeededImageDataset:
    """The few-shot train images for fine-tuning from images: a fresh augmentation at every access, seeded.

    Item ``idx`` of epoch ``e`` runs the image pipeline with the Python, NumPy and torch RNGs seeded by
    (seed, e, idx), so the augmentation of an item never depends on the number of workers or processes, and
    a run resumed after an interruption (between or within epochs) draws exactly the views of the
    uninterrupted run. The loop calls :meth:`set_epoch` before every epoch. Optionally only some classes
    (Meta-Adapter's base-class queries), labels unchanged.

    Args:
        dataset (dict): config of the image dataset (the few-shot train split).
        seed (int, optional): augmentation seed; defaults to the image dataset's few-shot seed.
        classes (list[int], optional): keep the images of these classes only.
    """

    def __init__(self, dataset: dict, seed: Optional[int] = None, classes: Optional[Sequence[int]] = None):
        self.dataset = DATASETS.build(dataset) if isinstance(dataset, dict) else dataset
        self.seed = seed if seed is not None else getattr(self.dataset, 'seed', 0)
        self.indices = class_indices(self.dataset, classes)
        self.epoch = 0

    @property
    def metainfo(self) -> dict:
        return self.dataset.metainfo

    def __len__(self) -> int:
        return len(self.indices)

    def get_data_info(self, idx: int) -> dict:
        return self.dataset.get_data_info(self.indices[idx])

    def set_epoch(self, epoch: int):
        self.epoch = epoch

    def __getitem__(self, idx: int) -> dict:
        with seeded_rng(mix64((self.seed * 1_000_003 + self.epoch) * 1_000_003 + idx) % 2**63):
            return self.dataset[self.indices[idx]]
