from typing import List, Optional, Sequence

from mmpretrain.registry import DATASETS

from ..utils.rng import mix64
from .base_novel import resolve_classes


def class_indices(dataset, classes) -> List[int]:
    """Indices of the items of ``dataset`` whose label is in ``classes`` (a class spec of
    :mod:`~tip_adapter_mm.datasets.base_novel`; all items when None)."""
    if classes is None:
        return list(range(len(dataset)))
    names = dataset.metainfo.get('classes')
    keep = set(resolve_classes(classes, len(names) if names else None, names))
    found = [i for i in range(len(dataset)) if int(dataset.get_data_info(i)['gt_label']) in keep]
    if not found:
        raise ValueError(f'no training image belongs to the classes {sorted(keep)}')
    return found


class TrainItems:
    """The few-shot train split as fine-tuning reads it: some classes (or all), each access seeded by
    (seed, epoch, index) so that the data never depend on workers or processes and a resumed run reads what
    the uninterrupted one read. The base of :class:`FeatureBankDataset` and :class:`SeededImageDataset`.

    Args:
        dataset (dict): config of the image dataset (the few-shot train split).
        seed (int, optional): seed; defaults to the image dataset's few-shot seed.
        classes (optional): keep the images of these classes only (indices, names or 'meta_adapter/<dataset>').
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
        """Called by the loop before every epoch."""
        self.epoch = epoch

    def item_seed(self, idx: int) -> int:
        """The seed of item ``idx`` in the current epoch."""
        return mix64((self.seed * 1_000_003 + self.epoch) * 1_000_003 + idx)
