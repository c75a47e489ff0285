from typing import List, Optional, Sequence, Union

import torch
from mmengine.evaluator import BaseMetric
from mmpretrain.registry import METRICS


def true_class_rank(scores: torch.Tensor, labels: torch.Tensor, maxk: int,
                    thr: Optional[float] = None) -> torch.Tensor:
    """Where each true class falls in its row's top ``maxk`` scores: 0 for the best, ``maxk`` if absent.

    The ranking is ``scores.topk(maxk)``, exactly as mmpretrain's ``Accuracy`` ranks (so ties fall the same
    way); a sample is a top-k hit iff its rank is below k. With ``thr``, a true class whose score is not above
    ``thr`` counts as absent (``Accuracy``'s ``thrs``).

    Args:
        scores (Tensor): [B, C] class scores.
        labels (Tensor): [B] int true classes.
        maxk (int): the largest k (<= C).
        thr (float, optional): score threshold. Defaults to None (none).

    Returns:
        Tensor: int64 ranks, shape [B].
    """
    top_scores, top = scores.float().topk(maxk, dim=1)
    hits = top == labels.to(top.device, torch.int64).view(-1, 1)
    if thr is not None:
        hits &= top_scores > thr
    # at most one position holds the true class; a row without a hit gets maxk
    positions = torch.arange(maxk, device=top.device).expand_as(hits)
    return torch.where(hits, positions, maxk).min(dim=1).values.cpu()


def sample_labels(data_samples: Sequence[dict]) -> torch.Tensor:
    """The ``gt_label`` of each data sample (dicts, as the evaluator hands them), shape [B]."""
    return torch.cat([torch.as_tensor(s['gt_label']).view(-1)[:1] for s in data_samples]).long()


def batch_scores(data_samples: Sequence[dict]) -> torch.Tensor:
    """The samples' ``pred_score`` as one [B, C] tensor (views of the head's batch output, stacked once)."""
    return torch.stack([s['pred_score'] for s in data_samples])


@METRICS.register_module()
class TopKAccuracy(BaseMetric):
    """mmpretrain's ``Accuracy`` (scores, one threshold) that keeps one integer per image, not its scores.

    ``Accuracy`` stores every image's full ``pred_score`` until the end of the evaluation (1000 floats per image
    on ImageNet, and the head's whole batch output, which those rows are views of). This metric ranks each
    batch at once (:func:`true_class_rank`, the same ``topk`` call as ``Accuracy``) and keeps only where the
    true class fell, so a 50,000-image test set costs 50,000 small integers. Same output keys
    (``accuracy/top1``, ``accuracy/top5``, ...), same values, ties included; one result per image, so
    multi-process evaluation collects them as mmengine does for ``Accuracy``.

    Args:
        topk (int | sequence of int): the k of each top-k accuracy. Defaults to (1, ).
        thr (float, optional): a prediction counts only if its score is above ``thr`` (``Accuracy``'s default
            ``thrs=0.``: a softmax score that underflowed to 0 is no hit). None for no threshold. Defaults to 0.
        collect_device (str): 'cpu' or 'gpu'.
        prefix (str, optional): metric name prefix. Defaults to 'accuracy'.
    """

    default_prefix: Optional[str] = 'accuracy'

    def __init__(self, topk: Union[int, Sequence[int]] = (1, ), thr: Optional[float] = 0.,
                 collect_device: str = 'cpu', prefix: Optional[str] = None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.topk = (topk, ) if isinstance(topk, int) else tuple(topk)
        if not self.topk or any(not isinstance(k, int) or k < 1 for k in self.topk):
            raise ValueError(f'TopKAccuracy topk must be positive integers, got {topk!r}')
        self.thr = thr

    def process(self, data_batch, data_samples: Sequence[dict]):
        if not data_samples:
            return
        scores = batch_scores(data_samples)
        maxk = max(self.topk)
        if maxk > scores.shape[1]:
            raise ValueError(f'top-{maxk} accuracy is unavailable since the number of classes is '
                             f'{scores.shape[1]}: lower the topk of val_evaluator / test_evaluator')
        self.results.extend(true_class_rank(scores, sample_labels(data_samples), maxk, self.thr).tolist())

    def compute_metrics(self, results: List) -> dict:
        ranks = torch.tensor(results, dtype=torch.long)
        # float32 count times 100 / n, as Accuracy computes it (the same value to the last bit)
        return {f'top{k}': (ranks < k).float().sum(0, keepdim=True).mul_(100. / len(ranks)).item()
                for k in self.topk}
