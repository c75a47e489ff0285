"""Encoding datasets into features, once, identically on any number of processes.

Augmented views are seeded per (seed, view, item), so the features of an item never depend on the
number of workers, the rank or the world size, and every view differs (mmengine's worker seeding has no
epoch term and would replay the same augmentation in every pass). Each rank encodes a strided shard; the
shards are gathered and interleaved back into dataset order, with the sampler padding dropped.
"""
from typing import Tuple

import torch
from mmengine.dataset import pseudo_collate
from mmengine.dist import all_gather, get_dist_info
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from torch.utils.data import DataLoader, Dataset

from ..utils.rng import seeded_rng


class AugmentedViews(Dataset):
    """``num_views`` passes over ``dataset``; item ``v * len(dataset) + i`` is view v of item i.

    Args:
        dataset: an mmengine dataset whose pipeline draws its randomness from Python/NumPy/torch RNGs.
        num_views (int): number of passes.
        seed (int): base seed of the augmentations.
    """

    def __init__(self, dataset, num_views: int = 1, seed: int = 0):
        self.dataset = dataset
        self.num_views = num_views
        self.seed = seed

    def __len__(self):
        return self.num_views * len(self.dataset)

    def __getitem__(self, index):
        view, item = divmod(index, len(self.dataset))
        with seeded_rng(((self.seed * 1_000_003 + view) * 1_000_003 + item) % 2**63):
            return self.dataset[item]


def unwrap(model):
    return model.module if is_model_wrapper(model) else model


def gather_in_order(local: torch.Tensor, total: int) -> torch.Tensor:
    """Rank r holds items r, r + W, r + 2W, ...; return all ``total`` items in order on every rank."""
    rank, world_size = get_dist_info()
    if world_size == 1:
        return local[:total]
    per_rank = -(-total // world_size)
    padded = local.new_zeros((per_rank, ) + tuple(local.shape[1:]))
    padded[:local.shape[0]] = local
    parts = all_gather(padded)
    return torch.stack(parts, dim=1).flatten(0, 1)[:total]


@torch.no_grad()
def extract_features(model, dataset, num_views: int = 1, seed: int = 0, batch_size: int = 64,
                     num_workers: int = 0, desc: str = 'features') -> Tuple[torch.Tensor, torch.Tensor]:
    """Raw backbone features of every item (and view) of ``dataset``.

    Args:
        model: an mmpretrain classifier (possibly wrapped) with ``data_preprocessor`` and ``extract_feat``.
        dataset: the dataset to encode.
        num_views (int): augmented views per item (1 for a deterministic test pipeline).
        seed (int): augmentation seed.
        batch_size (int): images per forward pass.
        num_workers (int): data loading workers.
        desc (str): name used in the log.

    Returns:
        tuple: float32 features [V, N, D] on the CPU, int64 labels [N].
    """
    model = unwrap(model)
    was_training = model.training
    model.eval()
    rank, world_size = get_dist_info()
    views = AugmentedViews(dataset, num_views, seed)
    total = len(views)
    shard = list(range(rank, total, world_size))
    loader = DataLoader(torch.utils.data.Subset(views, shard), batch_size=batch_size,
                        num_workers=num_workers, collate_fn=pseudo_collate, shuffle=False)
    device = next(model.parameters()).device
    chunks = []
    for batch in loader:
        data = model.data_preprocessor(batch, False)
        chunks.append(model.extract_feat(data['inputs'])[-1].float())
    dim = chunks[0].shape[1] if chunks else _feature_dim(model)
    local = torch.cat(chunks) if chunks else torch.zeros(0, dim, device=device)
    feats = gather_in_order(local, total).cpu()
    labels = torch.tensor([int(dataset.get_data_info(i)['gt_label']) for i in range(len(dataset))],
                          dtype=torch.long)
    model.train(was_training)
    print_log(f'encoded {desc}: {len(dataset)} images x {num_views} view(s) on {world_size} process(es)',
              logger='current')
    return feats.view(num_views, len(dataset), -1), labels


def _feature_dim(model) -> int:
    head = getattr(model, 'head', None)
    if head is not None and hasattr(head, 'feat_dim'):
        return int(head.feat_dim)
    return int(model.backbone.feat_dim)

