from typing import List, Optional, Sequence

import torch
from mmengine.evaluator import BaseMetric
from mmpretrain.registry import METRICS

from ..datasets.base_novel import resolve_classes, spec_values
from .topk_accuracy import batch_scores, sample_labels, true_class_rank


@METRICS.register_module()
class BaseNovelAccuracy(BaseMetric):
    """Top-k accuracy over all classes, and top-1 on the images of the base and of the novel classes.

    Every image is classified among all classes (the official cross-category protocol); ``base/top1`` and
    ``novel/top1`` are the accuracies on the images whose true class is a base or a novel class.

    Args:
        base_classes (list[int] | list[str] | str, optional): the base classes, a class spec (indices, names or
            'meta_adapter/<dataset>', :mod:`tip_adapter_mm.datasets.base_novel`); without them only the overall accuracy is
            reported (e.g. a transfer to another dataset, whose classes are all new).
        topk (sequence of int): overall top-k accuracies. Defaults to (1, 5); a k that is not below the
            number of classes (always 100 %) is left out.
        restrict_to_subset (bool): predict among the classes the test set has only
            (``dataset_meta['subset_classes']``, e.g. the 200 classes of ImageNet-A and -R, as CoOp evaluates
            them); without that key all classes are kept.
        collect_device (str): 'cpu' or 'gpu'.
        prefix (str, optional): metric name prefix.
    """

    default_prefix = None

    def __init__(self, base_classes: Optional[Sequence[int]] = None, topk: Sequence[int] = (1, 5),
                 restrict_to_subset: bool = False, collect_device: str = 'cpu', prefix: Optional[str] = None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.restrict_to_subset = restrict_to_subset
        self.base_classes = base_classes  # a class spec (tip_adapter_mm.datasets.base_novel)
        spec_values(base_classes)  # a malformed spec fails here
        self.topk = tuple(topk)

    def process(self, data_batch, data_samples: Sequence[dict]):
        """Rank the batch at once and keep, per image, where its true class fell in the top k and its label
        (two integers, not the scores: :func:`~tip_adapter_mm.evaluation.topk_accuracy.true_class_rank`)."""
        if not data_samples:
            return
        subset = (self.dataset_meta or {}).get('subset_classes') if self.restrict_to_subset else None
        scores = batch_scores(data_samples)
        if subset:
            masked = torch.full_like(scores, float('-inf'))
            masked[:, list(subset)] = scores[:, list(subset)]
            scores = masked
        labels = sample_labels(data_samples)
        ranks = true_class_rank(scores, labels, min(max(self.topk), scores.shape[1]))
        self.results.extend(zip(ranks.tolist(), labels.tolist()))

    def compute_metrics(self, results: List) -> dict:
        ranks = torch.tensor([r[0] for r in results], dtype=torch.long)
        labels = torch.tensor([r[1] for r in results], dtype=torch.long)
        classes = (self.dataset_meta or {}).get('classes')
        # top-k with k >= the class count is 100 % by construction: not reported (top-1 always is)
        topk = [k for k in self.topk if k == 1 or not classes or k < len(classes)]
        metrics = {f'accuracy/top{k}': 100. * (ranks < k).float().mean().item() for k in topk}
        if self.base_classes is not None:
            base = resolve_classes(self.base_classes, classnames=(self.dataset_meta or {}).get('classes'),
                                   what='the evaluator\'s base_classes')
            is_base = torch.isin(labels, torch.tensor(base))
            for name, mask in (('base', is_base), ('novel', ~is_base)):
                if bool(mask.any()):
                    metrics[f'{name}/top1'] = 100. * (ranks[mask] == 0).float().mean().item()
        return metrics
