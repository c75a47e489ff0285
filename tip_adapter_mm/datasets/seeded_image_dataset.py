from mmpretrain.registry import DATASETS

from ..utils.rng import seeded_rng
from .train_items import TrainItems


@DATASETS.register_module()
class SeededImageDataset(TrainItems):
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

    def __getitem__(self, idx: int) -> dict:
        with seeded_rng(self.item_seed(idx) % 2**63):
            return self.dataset[self.indices[idx]]
