"""ImageNet-scale memory and time changes (issue 14): tip_logits computes its cache term in the affinity's own
memory with the same values and gradients, and Meta-Adapter refines its class weights once per evaluation."""
import torch
import torch.nn.functional as F
from mmpretrain.structures import DataSample

from tip_adapter_mm import functional
from tip_adapter_mm.functional import tip_logits


def reference_tip_logits(f, w, keys, labels, alpha, beta):
    """The official expression, out of place: 100 f Wᵀ + alpha exp(-beta (1 - f Kᵀ)) onehot(L)."""
    one_hot = F.one_hot(labels, w.shape[0]).to(f.dtype)
    return 100. * f @ w.t() + alpha * torch.exp(-beta * (1. - f @ keys.t())) @ one_hot


def _problem(grouped=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    c, k, d, b = 7, 3, 16, 5
    w = F.normalize(torch.randn(c, d, generator=g), dim=1)
    keys = F.normalize(torch.randn(c * k, d, generator=g), dim=1)
    labels = torch.arange(c).repeat_interleave(k)
    if not grouped:
        labels = labels[torch.randperm(c * k, generator=g)]
    f = F.normalize(torch.randn(b, d, generator=g), dim=1)
    return f, w, keys, labels


def test_tip_logits_values_and_gradients_match_the_out_of_place_expression():
    for grouped in (True, False):
        f, w, keys, labels = _problem(grouped)
        alpha, beta = torch.tensor(1.7, dtype=torch.float64), torch.tensor(5.5, dtype=torch.float64)
        target = torch.randint(0, w.shape[0], (f.shape[0], ), generator=torch.Generator().manual_seed(3))
        grads = []
        for fn in (tip_logits, reference_tip_logits):
            k = keys.clone().requires_grad_()
            q = f.clone().requires_grad_()
            logits = fn(q, w, k, labels, alpha, beta)
            F.cross_entropy(logits, target).backward()
            grads.append((logits.detach(), k.grad, q.grad))
        for got, expected in zip(*grads):
            assert torch.allclose(got, expected, rtol=1e-5, atol=1e-6)
        with torch.no_grad():
            assert torch.allclose(tip_logits(f, w, keys, labels, 2., 3.),
                                  reference_tip_logits(f, w, keys, labels, 2., 3.), rtol=1e-5, atol=1e-6)


def test_tip_logits_keeps_a_gradient_for_a_trainable_beta():
    f, w, keys, labels = _problem()
    beta = torch.tensor(4., requires_grad=True)
    ref_beta = torch.tensor(4., requires_grad=True)
    tip_logits(f, w, keys, labels, 1., beta).sum().backward()
    reference_tip_logits(f, w, keys, labels, 1., ref_beta).sum().backward()
    assert beta.grad is not None and torch.allclose(beta.grad, ref_beta.grad, rtol=1e-5)


def test_meta_adapter_refines_once_per_evaluation_and_again_after_a_step(monkeypatch):
    from tip_adapter_mm.models import MetaAdapterHead
    from tip_adapter_mm.models import meta_adapter_head as module
    calls = []

    def counting(*args, **kwargs):
        calls.append(torch.is_grad_enabled())
        return functional.meta_adapter_weights(*args, **kwargs)

    monkeypatch.setattr(module, 'meta_adapter_weights', counting)
    c, k, d = 6, 2, 8
    head = MetaAdapterHead(num_classes=c, feat_dim=d, num_shots=k)
    g = torch.Generator().manual_seed(0)
    head.set_support(F.normalize(torch.randn(c, d, generator=g), dim=1),
                     F.normalize(torch.randn(c, k, d, generator=g), dim=-1))

    def evaluate(batches=5):
        with torch.no_grad():  # as mmengine's test and val loops run the model
            return [head.predict((torch.randn(4, d, generator=g), ), [DataSample() for _ in range(4)])
                    for _ in range(batches)]

    evaluate()
    assert calls == [False]  # one refinement for five batches
    optimizer = torch.optim.SGD(head.parameters(), lr=0.1)
    target = torch.zeros(4, dtype=torch.long)
    F.cross_entropy(head((torch.randn(4, d, generator=g), )), target).backward()
    optimizer.step()
    assert calls == [False, True]  # training refines with gradients, every step
    evaluate()
    assert calls == [False, True, False]  # the step changed the parameters: refined again, once
    evaluate()
    assert calls == [False, True, False]
