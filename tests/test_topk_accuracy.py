"""The project's streaming top-k metric against mmpretrain's Accuracy, and BaseNovelAccuracy's compact results."""
import pytest
import torch
from mmengine.evaluator import Evaluator
from mmpretrain.evaluation import Accuracy
from mmpretrain.structures import DataSample

from tip_adapter_mm.evaluation import BaseNovelAccuracy, TopKAccuracy


def samples(scores, labels):
    return [DataSample().set_gt_label(int(y)).set_pred_score(s) for s, y in zip(scores, labels)]


def evaluate(metric, scores, labels, batch=7):
    evaluator = Evaluator(metric)
    for i in range(0, len(labels), batch):
        evaluator.process(samples(scores[i:i + batch], labels[i:i + batch]))
    return evaluator.evaluate(len(labels))


@pytest.mark.parametrize('kind', ['random', 'ties', 'softmax_underflow'])
def test_equals_mmpretrain_accuracy(kind):
    g = torch.Generator().manual_seed(0)
    n, c = 203, 12
    labels = torch.randint(0, c, (n, ), generator=g)
    if kind == 'random':
        scores = torch.rand(n, c, generator=g)
    elif kind == 'ties':  # few distinct values: most top-5 boundaries are ties
        scores = torch.randint(0, 3, (n, c), generator=g).float() / 2
    else:  # softmax of 100-scaled logits: many exact zeros, which Accuracy's thrs=0. does not count as hits
        scores = (100 * torch.randn(n, c, generator=g)).softmax(dim=1)
        assert (scores == 0).any()
    for topk in [(1, 5), (1, 3, 12), 2]:
        expected = evaluate(Accuracy(topk=topk), scores, labels)
        got = evaluate(TopKAccuracy(topk=topk), scores, labels)
        assert got == expected, (kind, topk)
        assert all(key.startswith('accuracy/top') for key in got)
    none = evaluate(Accuracy(topk=(1, 5), thrs=None), scores, labels)
    assert evaluate(TopKAccuracy(topk=(1, 5), thr=None), scores, labels) == none


def test_keeps_one_integer_per_image_not_the_scores():
    metric = TopKAccuracy(topk=(1, 5))
    scores = torch.rand(9, 1000)
    metric.process(None, [s.to_dict() for s in samples(scores, range(9))])
    assert len(metric.results) == 9 and all(isinstance(r, int) for r in metric.results)


def test_topk_above_the_class_count_is_a_clear_error():
    with pytest.raises(ValueError, match='top-5 .*number of classes is 3.*topk'):
        evaluate(TopKAccuracy(topk=(1, 5)), torch.rand(4, 3), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match='positive'):
        TopKAccuracy(topk=(0, ))


def test_base_novel_accuracy_keeps_two_integers_per_image_and_matches_a_plain_count():
    g = torch.Generator().manual_seed(1)
    n, c = 150, 10
    labels = torch.randint(0, c, (n, ), generator=g)
    scores = torch.randint(0, 4, (n, c), generator=g).float()  # ties
    metric = BaseNovelAccuracy(base_classes=[0, 1, 2, 3], topk=(1, 5, 20))
    metric.dataset_meta = dict(classes=[str(i) for i in range(c)])
    evaluator = Evaluator(metric)
    for i in range(0, n, 16):
        evaluator.process(samples(scores[i:i + 16], labels[i:i + 16]))
    assert all(len(r) == 2 and all(isinstance(v, int) for v in r) for r in metric.results)
    out = evaluator.evaluate(n)
    # the ranking of the largest k asked for (20, at most C): topk breaks ties differently for another k
    hits = scores.topk(c, dim=1).indices == labels[:, None]
    base = labels < 4
    assert out['accuracy/top1'] == pytest.approx(100. * hits[:, 0].float().mean().item())
    assert out['accuracy/top5'] == pytest.approx(100. * hits[:, :5].any(1).float().mean().item())
    assert 'accuracy/top20' not in out  # k >= C: always 100 %, left out
    assert out['base/top1'] == pytest.approx(100. * hits[base, 0].float().mean().item())
    assert out['novel/top1'] == pytest.approx(100. * hits[~base, 0].float().mean().item())
