from typing import Sequence

from mmpretrain.registry import DATASETS

from .feature_bank_dataset import class_indices


@DATASETS.register_module()
class ClassSubsetDataset:
    """The images of some classes of a dataset (labels unchanged), e.g. Meta-Adapter's base-class queries.

    Args:
        dataset (dict): config of the image dataset.
        classes (list[int]): the class indices to keep.
    """

    def __init__(self, dataset: dict, classes: Sequence[int]):
        self.dataset = DATASETS.build(dataset) if isinstance(dataset, dict) else dataset
        self.indices = class_indices(self.dataset, classes)

    @property
    def metainfo(self) -> dict:
        return self.dataset.metainfo

    def __len__(self) -> int:
        return len(self.indices)

    def get_data_info(self, idx: int) -> dict:
        return self.dataset.get_data_info(self.indices[idx])

    def __getitem__(self, idx: int) -> dict:
        return self.dataset[self.indices[idx]]
