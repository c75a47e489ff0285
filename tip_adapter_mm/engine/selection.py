"""Choosing alpha and beta on the validation split: shared by the training-free and fine-tuning loops."""
import torch
from mmengine.dist import broadcast_object_list
from mmengine.logging import print_log

from ..functional import search_tip_hparams, topk_accuracy
from .features import unwrap
from .hooks.build_cache_hook import find_cache_hook
from .record import timed, update_record


def select_alpha_beta(runner, search: bool, beta_grid, alpha_grid, max_chunk_bytes: int = 1 << 28):
    """Grid-search alpha and beta on the validation features (or keep the head's) and record the result.

    The test split is never used. Every process keeps rank 0's choice.
    """
    head = unwrap(runner.model).head
    val = find_cache_hook(runner).features(runner, 'val')
    if val is None:
        if search and head.cache_size:
            raise ValueError('searching alpha and beta needs a validation split, but val_dataloader is '
                             'missing or empty; set train_cfg.search=False to keep the configured values')
        update_record(runner, val_top1=None)
        return
    feats, labels = val
    if search and head.cache_size:
        with timed(runner, 'search'):
            result = list(search_tip_hparams(feats, labels, head.clip_weights, head.cache_keys.detach(),
                                             head.cache_labels, beta_grid, alpha_grid, max_chunk_bytes))
        broadcast_object_list(result, src=0)
        beta, alpha, top1 = result
        head.set_hparams(alpha, beta)
        print_log(f'alpha/beta search on {len(labels)} validation images: beta={beta:.4f} alpha={alpha:.4f} '
                  f'val top-1 {top1:.2f}%', logger='current')
    else:
        with torch.no_grad():
            top1 = topk_accuracy(head.logits(feats), labels)
    update_record(runner, val_top1=top1, val_size=len(labels))
