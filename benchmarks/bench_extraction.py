#!/usr/bin/env python
"""Benchmark of feature extraction at real CLIP sizes: how close a run's encoding comes to its limits.

For each open_clip model (default RN50 and ViT-B-16, random weights: the accuracy is meaningless, the shapes and
costs are real) and each precision, on a synthetic image folder (``--images`` JPEGs of 256-500 px, several
classes, read by the project's ``FewShotImageFolder`` through the 224-px test pipeline of
``configs/_base_/datasets/fewshot_224.py``), it measures images per second of:

(i)   extraction as a run does it: :func:`tip_adapter_mm.engine.features.extract_features` into a fresh
      feature store (decode + pipeline in ``--num-workers`` loader workers, preprocessing, forward, store write);
(ii)  the encoder alone: ``model.extract_feat`` on pre-decoded, pre-normalised batches already on the device
      (the limit set by the model);
(iii) the data pipeline alone: the same dataset through a DataLoader with the same workers, batch size and
      collate function (the limit set by decoding);
(iv)  store reads: the same ``extract_features`` call again, which finds every feature stored and encodes none.

Each measurement runs ``--repeats`` times in interleaved rounds (each (i) into a fresh store) and its best time is
kept: on a shared machine the least disturbed pass is the closest to the cost itself. It reports the fraction
of min((ii), (iii)) that (i) reaches, and also the no-overlap bound 1 / (1/(ii) + 1/(iii)) (decoding and
encoding one after the other: on a CPU-only machine both compete for the same cores, so (i) cannot reach
min((ii), (iii)) there). The data preprocessor's own cost (stacking, normalising, moving to the device) is
shown for information; it is part of (i) only.

Random weights have no stable identity, so the store would not key them: the random state dict is written to a
temporary file and the backbone loads it as ``pretrained=<file>``, which the store keys by its sha256.

Usage::

    python benchmarks/bench_extraction.py [--models RN50 ViT-B-16] [--images 64] [--batch-size 32]
        [--num-workers 2] [--precision fp32 [fp16 ...]] [--repeats 2] [--device cpu|cuda] [--threads T]
        [--work-dir DIR]

    # on a GPU (a larger folder, both precisions):
    python benchmarks/bench_extraction.py --device cuda --images 4096 --batch-size 256 --num-workers 16 \\
        --precision fp16 fp32 --repeats 3

Default: 64 images, batch 32, 2 workers, fp32, 2 rounds, on CUDA when available; about 4 minutes on 2 CPU
cores (ViT-B/16 encodes ~1.7 images/s there).
Images/s are reported, never asserted; the exit status is 1 only when a correctness check fails (an image
encoded more or less than once, or stored features that differ from the encoded ones).
"""
import argparse
import copy
import os
import os.path as osp
import shutil
import sys
import tempfile
import time

import numpy as np
import torch

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, REPO)

MODEL_CONFIGS = osp.join(REPO, 'configs', '_base_', 'models')
DATASET_CONFIG = osp.join(REPO, 'configs', '_base_', 'datasets', 'fewshot_224.py')
IMAGE_DIR = 'images'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--models', nargs='+', default=['RN50', 'ViT-B-16'],
                        help='open_clip (or OpenAI) model names; each needs a configs/_base_/models/clip_*.py')
    parser.add_argument('--images', type=int, default=64, help='synthetic images (default 64)')
    parser.add_argument('--classes', type=int, default=8, help='class folders (default 8)')
    parser.add_argument('--batch-size', type=int, default=32, help='images per forward pass (default 32)')
    parser.add_argument('--num-workers', type=int, default=2, help='data loading workers (default 2)')
    parser.add_argument('--precision', nargs='+', default=['fp32'], choices=['fp32', 'fp16', 'bf16'],
                        help="the backbone's precision(s) (default fp32; fp16 is for GPUs)")
    parser.add_argument('--repeats', type=int, default=2,
                        help='interleaved rounds of (i)-(iv), each (i) into a fresh store; the best time of each '
                             'is reported (default 2)')
    parser.add_argument('--device', default=None, help='cpu or cuda (default: cuda when available)')
    parser.add_argument('--threads', type=int, default=None, help='torch threads (default: torch\'s)')
    parser.add_argument('--work-dir', default=None,
                        help='where the images, weights and stores go (default: a temporary folder, removed)')
    args = parser.parse_args(argv)
    if min(args.images, args.classes, args.batch_size, args.repeats) < 1 or args.num_workers < 0:
        parser.error('--images, --classes, --batch-size and --repeats must be >= 1, --num-workers >= 0')
    args.device = args.device or ('cuda' if torch.cuda.is_available() else 'cpu')
    return args


# -- inputs ------------------------------------------------------------------------------------------------------

def write_images(root, n, classes, seed=0):
    """``n`` JPEGs of 256-500 px (each side drawn independently) under ``root/images/<class>/``.

    The content is smooth random colour fields (an 8x8 random image upsampled) plus mild noise, so that the
    files compress and decode like photographs rather than like white noise.
    """
    from PIL import Image
    rng = np.random.default_rng(seed)
    for i in range(n):
        w, h = (int(v) for v in rng.integers(256, 501, size=2))
        small = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
        img = np.asarray(small.resize((w, h), Image.BICUBIC), dtype=np.int16)
        img = np.clip(img + rng.integers(-12, 13, img.shape), 0, 255).astype(np.uint8)
        folder = osp.join(root, IMAGE_DIR, f'class_{i % classes:03d}')
        os.makedirs(folder, exist_ok=True)
        Image.fromarray(img).save(osp.join(folder, f'{i:06d}.jpg'), quality=90)


def model_config(name):
    """The project's model config (``configs/_base_/models``) whose backbone is ``name``."""
    from mmengine.config import Config

    from tip_adapter_mm.models.clip_backbone import OPENAI_NAMES
    wanted = OPENAI_NAMES.get(name, name)
    for file in sorted(os.listdir(MODEL_CONFIGS)):
        if file.startswith('clip_') and file.endswith('.py'):
            model = Config.fromfile(osp.join(MODEL_CONFIGS, file)).model
            if OPENAI_NAMES.get(model.backbone.model_name, model.backbone.model_name) == wanted:
                return model.to_dict()
    raise SystemExit(f'no configs/_base_/models/clip_*.py has backbone {name!r}')


def build_model(name, pretrained, precision, classes, device):
    from mmpretrain.registry import MODELS
    model_cfg = model_config(name)
    model_cfg['backbone'].update(pretrained=pretrained, precision=precision)
    model_cfg['head'].update(num_classes=classes, num_shots=0)  # no cache: extraction never uses the head
    model = MODELS.build(copy.deepcopy(model_cfg)).to(device).eval()
    return model, model_cfg


def random_weights_file(name, folder):
    """Write the random weights of a fresh open_clip ``name`` (fp32) to a file; return its path."""
    from tip_adapter_mm.models import CLIPBackbone
    backbone = CLIPBackbone(model_name=name, pretrained=None)
    path = osp.join(folder, f'{name.replace("/", "-")}-random.pt')
    torch.save(backbone.clip.state_dict(), path)
    return path


# -- measurements ---------------------------------------------------------------------------------------------

def sync(device):
    if str(device).startswith('cuda'):
        torch.cuda.synchronize()


def timed(fn, device):
    sync(device)
    start = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - start, out


def pipeline_pass(dataset, batch_size, num_workers):
    """(iii): every item through the dataset's pipeline in a DataLoader as ``extract_features`` builds it."""
    from mmengine.dataset import pseudo_collate
    from torch.utils.data import DataLoader
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=pseudo_collate,
                        shuffle=False)
    return list(loader)


def bench_one(name, precision, weights, dataset, pipeline, args, work):
    from tip_adapter_mm.engine.features import extract_features, store_args
    from tip_adapter_mm.features.keys import hash_file_contents
    device = args.device
    model, model_cfg = build_model(name, weights, precision, args.classes, device)
    n = len(dataset)
    store_root = osp.join(work, f'store-{name.replace("/", "-")}-{precision}')
    kwargs = dict(batch_size=args.batch_size, num_workers=args.num_workers, desc=f'{name} {precision}',
                  **store_args(dict(feature_store=dict(root=store_root, mode='stat', enabled=True), model=model_cfg),
                               dict(pipeline=pipeline)))
    times = {key: [] for key in ('i', 'ii', 'iii', 'iv', 'pre', 'hash')}
    checks = {}
    for round_ in range(args.repeats):  # interleaved rounds; the best time of each measurement is kept
        # (iii) decoding alone; its batches feed (ii)
        seconds, batches = timed(lambda: pipeline_pass(dataset, args.batch_size, args.num_workers), 'cpu')
        times['iii'].append(seconds)
        with torch.no_grad():
            seconds, inputs = timed(lambda: [model.data_preprocessor(b, False)['inputs'] for b in batches], device)
            times['pre'].append(seconds)
            if round_ == 0:
                model.extract_feat(inputs[0])  # warm-up (lazy initialisation, cuDNN/oneDNN kernel choice)
                sync(device)
            # (ii) the encoder on normalised tensors on the device; the features come back to the CPU as in a run
            seconds, direct = timed(lambda: torch.cat([model.extract_feat(x)[-1].float().cpu() for x in inputs]),
                                    device)
            times['ii'].append(seconds)
        del inputs, batches
        # (i) a run's extraction into a fresh store, (iv) the same call again: everything is read
        shutil.rmtree(store_root, ignore_errors=True)
        seconds, (feats, _, encoded) = timed(lambda: extract_features(model, dataset, **kwargs), device)
        times['i'].append(seconds)
        seconds, (again, _, encoded_again) = timed(lambda: extract_features(model, dataset, **kwargs), device)
        times['iv'].append(seconds)
        for check, ok in ((f'(i) encoded every image once ({encoded} of {n})', encoded == n),
                          (f'(iv) encoded nothing ({encoded_again})', encoded_again == 0),
                          ('(iv) read back exactly the features (i) stored', torch.equal(feats, again))):
            checks[check] = checks.get(check, True) and ok
        # part of (i): a fresh store hashes the weights file once (its key); later runs find the hash cached
        times['hash'].append(timed(lambda: hash_file_contents(weights), 'cpu')[0])
    times = {key: min(values) for key, values in times.items()}
    diff = (feats[0] - direct).abs().max().item()
    del model
    if str(device).startswith('cuda'):
        torch.cuda.empty_cache()
    return dict(name=name, precision=precision, n=n, times=times, checks=checks, diff=diff,
                dim=int(feats.shape[-1]))


def rate(n, seconds):
    return n / seconds if seconds > 0 else float('inf')


def print_result(r, args):
    n, t = r['n'], r['times']
    rates = {k: rate(n, v) for k, v in t.items()}
    limit = min(rates['ii'], rates['iii'])
    serial = 1 / (1 / rates['ii'] + 1 / rates['iii'])
    print(f'\n{r["name"]} {r["precision"]} (random weights, {r["dim"]}-d features) on {args.device}: {n} images, '
          f'batch {args.batch_size}, {args.num_workers} worker(s), best of {args.repeats} round(s)')
    print(f'  {"measurement":<66}{"seconds":>9}{"images/s":>10}{"of limit":>10}')
    rows = [('(i)   extract_features into a fresh store (decode+forward+write)', 'i'),
            ('(ii)  encoder forward on pre-normalised tensors (limit)', 'ii'),
            ('(iii) data pipeline alone (DataLoader, same workers)', 'iii'),
            ('(iv)  store read (extract_features again, 0 encoded)', 'iv'),
            ('      [info] data preprocessor (stack, normalise, to device)', 'pre'),
            ('      [info] sha256 of the weights file (in (i): once per store)', 'hash')]
    for label, key in rows:
        frac = f'{rates[key] / limit:>9.1%}' if key in ('i', 'ii', 'iii') else f'{"":>9}'
        per_second = f'{rates[key]:>10.1f}' if key != 'hash' else f'{"":>10}'
        print(f'  {label:<66}{t[key]:>9.2f}{per_second} {frac}')
    print(f'  (i) reaches {rates["i"] / limit:.1%} of min((ii), (iii)) = {limit:.1f} images/s, and '
          f'{rates["i"] / serial:.1%} of the no-overlap bound 1/(1/(ii)+1/(iii)) = {serial:.1f} images/s; '
          f'store reads are {rates["iv"] / rates["i"]:.0f}x faster than (i)')
    for name, ok in r['checks'].items():
        print(f'  [{"ok" if ok else "FAIL"}] {name}')
    print(f'  [info] max |feature difference| between (i) and (ii) (other batch boundaries): {r["diff"]:.2e}')


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    import tip_adapter_mm  # noqa: F401  (registers the project's modules)
    from mmpretrain.registry import DATASETS
    init_default_scope('mmpretrain')
    work = osp.abspath(args.work_dir) if args.work_dir else tempfile.mkdtemp(prefix='bench-extraction-')
    os.makedirs(work, exist_ok=True)
    try:
        t0 = time.perf_counter()
        write_images(work, args.images, args.classes)
        print(f'torch {torch.__version__}, {torch.get_num_threads()} thread(s), {os.cpu_count()} CPU(s), device '
              f'{args.device}' + (f' ({torch.cuda.get_device_name()})' if args.device.startswith('cuda') else '')
              + f'; {args.images} synthetic JPEGs (256-500 px, {args.classes} classes) written in '
              f'{time.perf_counter() - t0:.1f} s under {work}')
        pipeline = Config.fromfile(DATASET_CONFIG).test_pipeline
        dataset = DATASETS.build(dict(type='FewShotImageFolder', data_root=work, split='test',
                                      split_dirs=dict(train=IMAGE_DIR, val=None, test=IMAGE_DIR),
                                      pipeline=copy.deepcopy(pipeline)))
        results = []
        for name in args.models:
            weights = random_weights_file(name, work)
            for precision in args.precision:
                results.append(bench_one(name, precision, weights, dataset, pipeline, args, work))
                print_result(results[-1], args)
    finally:
        if not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)

    print(f'\nSummary (images/s; {args.images} images, batch {args.batch_size}, {args.num_workers} worker(s), '
          f'{args.device})')
    header = (f'  {"model":<12}{"prec":<6}{"(i) run":>10}{"(ii) enc":>10}{"(iii) data":>11}{"(iv) read":>11}'
              f'{"(i)/min":>9}{"(i)/serial":>11}')
    print(header)
    for r in results:
        rates = {k: rate(r['n'], v) for k, v in r['times'].items()}
        limit = min(rates['ii'], rates['iii'])
        serial = 1 / (1 / rates['ii'] + 1 / rates['iii'])
        print(f'  {r["name"]:<12}{r["precision"]:<6}{rates["i"]:>10.1f}{rates["ii"]:>10.1f}{rates["iii"]:>11.1f}'
              f'{rates["iv"]:>11.1f}{rates["i"] / limit:>9.1%}{rates["i"] / serial:>11.1%}')
    ok = all(ok for r in results for ok in r['checks'].values())
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
