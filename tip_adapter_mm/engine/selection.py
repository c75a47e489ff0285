"""Choosing alpha and beta on the validation split: shared by the training-free and fine-tuning loops."""
import torch
from mmengine.dist import broadcast_object_list
from mmengine.logging import print_log

from ..functional import search_tip_hparams, topk_accuracy
from ..utils.progress import progress_bar
from .features import unwrap
from .record import timed, update_record


def select_alpha_beta(runner, features, search: bool, beta_grid, alpha_grid, max_chunk_bytes: int = 1 << 28,
                      split: str = 'val'):
    """Grid-search alpha and beta on the selection features (or keep the head's) and record the result.

    Args:
        runner: the runner (its head is set, its record updated).
        features (tuple, optional): (normalised features, labels) of the selection split; None if it has none.
        search (bool): search; False keeps the head's alpha and beta and only scores them.
        beta_grid, alpha_grid: the grids.
        max_chunk_bytes (int): memory bound of one chunk of the search.
        split (str): the selection split's name, for messages: 'val' ('test' only under ``legacy_test``).
            Every process keeps rank 0's choice.
    """
    head = unwrap(runner.model).head
    val = features
    if val is None:
        if search and head.cache_size:
            raise ValueError(f'searching alpha and beta needs a {split} split, but {split}_dataloader is '
                             "missing or empty; set hp_selection='none' to keep the configured values")
        update_record(runner, val_top1=None)
        return
    feats, labels = val
    if search and head.cache_size:
        with timed(runner, 'search'), progress_bar(total=len(beta_grid), desc=f'alpha/beta search on {split}',
                                                    unit='beta') as bar:
            result = list(search_tip_hparams(feats, labels, head.clip_weights, head.cache_keys.detach(),
                                             head.cache_labels, beta_grid, alpha_grid, max_chunk_bytes,
                                             progress=bar.update))
        broadcast_object_list(result, src=0)
        beta, alpha, top1 = result
        head.set_hparams(alpha, beta)
        print_log(f'alpha/beta search on {len(labels)} validation images: beta={beta:.4f} alpha={alpha:.4f} '
                  f'val top-1 {top1:.2f}%', logger='current')
    else:
        with torch.no_grad():
            top1 = topk_accuracy(head.logits(feats), labels)
    update_record(runner, val_top1=top1, val_size=len(labels))
