#!/usr/bin/env python
"""Benchmark of the adapters' cost at inference: the head's time per batch against the image encoder's.

For each open_clip image encoder (default RN50 and ViT-B-16, random weights: the costs are real, the accuracy is
meaningless) it times, on the same batch (``--batch-size`` images of 224 px, default 32), side by side in one run:

* the encoder: ``CLIPBackbone`` on a normalised image batch (the [B, D] raw features every head starts from);
* the heads on that output, at ImageNet size (``--classes`` C = 1000, ``--shots`` K = 16), built and filled
  with ``set_cache`` as the cache hook fills them:

  - zero-shot CLIP: ``CacheHead`` with ``num_shots=0`` (the text classifier alone);
  - Tip-Adapter: ``CacheHead`` with a C x K = 16,000-entry cache (Tip-Adapter-F computes the same logits from
    trained keys);
  - Meta-Adapter: ``MetaAdapterHead`` with a [C, K, D] support cache; refining the C class weights costs
    2 C D² for the projections, independent of the batch. Without gradients (evaluation, inference) the head
    computes them once and reuses them until its weights or cache change, so its ``forward`` is timed as a test
    loop runs it, and the one-off refinement (``functional.meta_adapter_weights``) is printed beside it.

Each time is the median of ``--repeats`` runs after a warm-up; it prints head / encoder in percent against the
goal of at most 2 %. Nothing is asserted.

Usage::

    python benchmarks/bench_adapter_overhead.py [--models RN50 ViT-B-16] [--batch-size 32] [--classes 1000]
        [--shots 16] [--repeats 5] [--precision fp32] [--device cpu|cuda] [--threads T]

About 1-2 minutes on 2 CPU cores at the defaults.
"""
import argparse
import os
import os.path as osp
import statistics
import sys
import time

import torch

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, REPO)

GOAL = 0.02


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--models', nargs='+', default=['RN50', 'ViT-B-16'], help='open_clip model names')
    parser.add_argument('--batch-size', type=int, default=32, help='images per batch (default 32)')
    parser.add_argument('--classes', type=int, default=1000, help='C (default 1000)')
    parser.add_argument('--shots', type=int, default=16, help='K (default 16)')
    parser.add_argument('--repeats', type=int, default=5, help='timed runs per measurement (median; default 5)')
    parser.add_argument('--precision', default='fp32', choices=['fp32', 'fp16', 'bf16'],
                        help="the encoder's precision (the heads compute in float32)")
    parser.add_argument('--device', default=None, help='cpu or cuda (default: cuda when available)')
    parser.add_argument('--threads', type=int, default=None, help='torch threads (default: torch\'s)')
    args = parser.parse_args(argv)
    args.device = args.device or ('cuda' if torch.cuda.is_available() else 'cpu')
    if min(args.batch_size, args.classes, args.shots, args.repeats) < 1:
        parser.error('--batch-size, --classes, --shots and --repeats must be >= 1')
    return args


def median_time(fn, repeats, device):
    """Median seconds of ``fn()`` over ``repeats`` calls, after one warm-up call; and its last output."""
    cuda = str(device).startswith('cuda')
    with torch.no_grad():
        out = fn()
        times = []
        for _ in range(repeats):
            if cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
            out = fn()
            if cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
    return statistics.median(times), out


def unit_rows(n, d, gen, device):
    return torch.nn.functional.normalize(torch.randn(n, d, generator=gen), dim=-1).to(device)


def build_heads(c, k, d, device, seed=0):
    """(name, head) pairs, each filled through ``set_cache`` with random unit-norm text weights and cache."""
    from tip_adapter_mm.models import CacheHead, MetaAdapterHead
    gen = torch.Generator().manual_seed(seed)
    text = unit_rows(c, d, gen, device)
    keys = unit_rows(c * k, d, gen, device)
    labels = torch.arange(c, device=device).repeat_interleave(k)  # the cache order of the cache hook
    zero_shot = CacheHead(num_classes=c, feat_dim=d, num_shots=0).to(device).eval()
    zero_shot.set_cache(text)
    tip = CacheHead(num_classes=c, feat_dim=d, num_shots=k, alpha=1., beta=5.5).to(device).eval()
    tip.set_cache(text, keys, labels)
    meta = MetaAdapterHead(num_classes=c, feat_dim=d, num_shots=k).to(device).eval()
    meta.set_cache(text, keys, labels)
    return [('zero-shot CLIP (CacheHead, K=0)', zero_shot), (f'Tip-Adapter (CacheHead, N={c * k})', tip),
            ('Meta-Adapter (MetaAdapterHead.forward)', meta)]


def bench_model(name, args):
    from tip_adapter_mm.models import CLIPBackbone
    device = args.device
    backbone = CLIPBackbone(model_name=name, pretrained=None, precision=args.precision).to(device).eval()
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(args.batch_size, 3, 224, 224, generator=gen).to(device)  # a normalised batch
    t_enc, feats = median_time(lambda: backbone(images), args.repeats, device)
    d = feats[-1].shape[1]
    rows = []
    heads = build_heads(args.classes, args.shots, d, device)
    head_repeats = max(args.repeats, 20)  # heads are fast: more runs for a stable median
    for label, head in heads:
        t, logits = median_time(lambda: head(feats), head_repeats, device)
        assert logits.shape == (args.batch_size, args.classes)
        rows.append((label, t))
    meta = heads[-1][1]
    from tip_adapter_mm.functional import meta_adapter_weights
    t_refine, _ = median_time(lambda: meta_adapter_weights(
        meta.clip_weights, meta.support, meta.q_proj.weight, meta.k_proj.weight, meta.alpha_proj.weight,
        meta.alpha_proj.bias, meta.num_heads), head_repeats, device)
    del backbone
    return dict(name=name, dim=d, t_enc=t_enc, rows=rows, t_refine=t_refine)


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    import tip_adapter_mm  # noqa: F401  (registers the project's modules)
    from mmengine.registry import init_default_scope
    init_default_scope('mmpretrain')
    print(f'torch {torch.__version__}, {torch.get_num_threads()} thread(s), {os.cpu_count()} CPU(s), device '
          f'{args.device}; batch {args.batch_size} x 224 px, encoder {args.precision}, heads float32, '
          f'C={args.classes}, K={args.shots}; medians of {args.repeats} (encoder) / {max(args.repeats, 20)} '
          '(heads) runs; random weights')
    results = [bench_model(name, args) for name in args.models]
    print()
    header = f'{"model":<10}{"head":<46}{"head ms":>10}{"encoder ms":>12}{"head/encoder":>14}{"<= 2 %":>8}'
    print(header)
    print('-' * len(header))
    for r in results:
        for label, t in r['rows']:
            share = t / r['t_enc']
            print(f'{r["name"]:<10}{label:<46}{1e3 * t:>10.3f}{1e3 * r["t_enc"]:>12.1f}{share:>13.2%}'
                  f'{"yes" if share <= GOAL else "NO":>8}')
    print()
    for r in results:
        print(f'{r["name"]} (D={r["dim"]}): Meta-Adapter\'s refinement of the {args.classes} class weights alone '
              f'takes {1e3 * r["t_refine"]:.2f} ms per call ({r["t_refine"] / r["t_enc"]:.2%} of one encoder '
              f'batch), whatever the batch size')


if __name__ == '__main__':
    main()
