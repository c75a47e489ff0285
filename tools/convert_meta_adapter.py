"""Convert Meta-Adapter weights into a checkpoint for ``load_from`` / ``tools/test.py CONFIG CHECKPOINT``.

Accepted sources:

* an official weights file (``ArsenalCheng/Meta-Adapter``: ``torch.save(adapter.state_dict(), ...)``, e.g.
  ``best_meta_16shots.pt`` or the released ImageNet models): exactly the keys ``q_proj.weight``,
  ``k_proj.weight``, ``alpha_proj.weight`` and ``alpha_proj.bias``, possibly fp16, possibly with a
  ``module.`` prefix (DataParallel);
* a checkpoint of this project (``{'state_dict': {'head.q_proj.weight': ...}}``): only the four adapter
  parameters are kept, so the result can be applied to another dataset, shot count or support cache.

The output is ``{'meta': {...}, 'state_dict': {'head.q_proj.weight': ..., ...}}`` with fp32 tensors and no
cache buffers: :class:`~tip_adapter_mm.models.MetaAdapterHead` then loads the adapter and the cache hook
builds the text weights and the support cache for the configured dataset.

Usage::

    python tools/convert_meta_adapter.py best_meta_16shots.pt work_dirs/meta_rn50.pth --feat-dim 1024
"""
import argparse
import os.path as osp
import sys
import time

import torch

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..'))

from tip_adapter_mm.utils import atomic_torch_save  # noqa: E402
from tip_adapter_mm.utils.checkpoint import safe_load  # noqa: E402

ADAPTER_KEYS = ('q_proj.weight', 'k_proj.weight', 'alpha_proj.weight', 'alpha_proj.bias')


def _strip(key: str, prefixes) -> str:
    stripped = True
    while stripped:
        stripped = False
        for p in prefixes:
            if key.startswith(p):
                key, stripped = key[len(p):], True
    return key


def adapter_state_dict(state, src: str = '<state dict>') -> dict:
    """The four adapter parameters of an official or project state dict, fp32, without prefixes.

    Args:
        state (dict): the loaded file.
        src (str): its name, for the error messages.

    Returns:
        dict: ``{'q_proj.weight': [D, D], 'k_proj.weight': [D, D], 'alpha_proj.weight': [1, D],
        'alpha_proj.bias': [1]}``.
    """
    if not isinstance(state, dict):
        raise ValueError(f"'{src}' holds a {type(state).__name__}, not a state dict")
    if isinstance(state.get('state_dict'), dict):  # a project (mmengine) checkpoint
        full = {_strip(k, ('module.', )): v for k, v in state['state_dict'].items()}
        heads = {k[len('head.'):]: v for k, v in full.items() if k.startswith('head.')}
        state = {k: v for k, v in heads.items() if k in ADAPTER_KEYS}
        if not state:
            raise ValueError(f"'{src}' is a checkpoint without Meta-Adapter parameters (no head.q_proj.weight, "
                             '...): it was not made with MetaAdapterHead')
    else:
        state = {_strip(k, ('module.', )): v for k, v in state.items()}
        extra = sorted(k for k in state if k not in ADAPTER_KEYS)
        if extra:
            raise ValueError(f"'{src}' has keys {extra} that are not Meta-Adapter parameters; expected exactly "
                             f'{list(ADAPTER_KEYS)}')
    missing = [k for k in ADAPTER_KEYS if k not in state]
    if missing:
        raise ValueError(f"'{src}' lacks the Meta-Adapter parameters {missing}; expected {list(ADAPTER_KEYS)}")
    for k in ADAPTER_KEYS:
        if not torch.is_tensor(state[k]) or not state[k].is_floating_point():
            raise ValueError(f"'{src}': {k} is not a floating-point tensor")
    q, k_, g, b = (state[k] for k in ADAPTER_KEYS)
    if q.dim() != 2 or q.shape[0] != q.shape[1]:
        raise ValueError(f"'{src}': q_proj.weight has shape {tuple(q.shape)}, expected a square [D, D]")
    d = q.shape[0]
    for name, value, expected in (('k_proj.weight', k_, (d, d)), ('alpha_proj.weight', g, (1, d)),
                                  ('alpha_proj.bias', b, (1, ))):
        if tuple(value.shape) != expected:
            raise ValueError(f"'{src}': {name} has shape {tuple(value.shape)} but q_proj.weight is "
                             f'{tuple(q.shape)}, so expected {expected}')
    return {k: state[k].detach().float().cpu().contiguous() for k in ADAPTER_KEYS}


def _load(src: str):
    """Read ``src`` with ``torch.load(weights_only=True)``: tensors and plain values only, never code."""
    return safe_load(src, map_location='cpu', what='Meta-Adapter weights file')


def convert(src: str, dst: str, feat_dim=None) -> dict:
    """Convert ``src`` (see the module docstring) and write the checkpoint to ``dst`` atomically.

    Args:
        src (str): official weights file or project checkpoint.
        dst (str): output path.
        feat_dim (int, optional): the expected feature size D of the target config (1024 for RN50, 512 for
            ViT-B/16 ...); checked if given.

    Returns:
        dict: the written checkpoint.
    """
    if not osp.isfile(src):
        raise FileNotFoundError(f"Meta-Adapter weights file '{src}' does not exist")
    state = _load(src)
    adapter = adapter_state_dict(state, src)
    d = adapter['q_proj.weight'].shape[0]
    if feat_dim is not None and int(feat_dim) != d:
        raise ValueError(f"'{src}' holds a Meta-Adapter for feature size {d} but --feat-dim is {feat_dim} "
                         f'(q_proj.weight is {tuple(adapter["q_proj.weight"].shape)}, expected '
                         f'{(int(feat_dim), int(feat_dim))}): it was trained for another backbone')
    checkpoint = dict(
        meta=dict(source=osp.abspath(src), converted_by='tools/convert_meta_adapter.py', feat_dim=d,
                  num_params=sum(v.numel() for v in adapter.values()),
                  time=time.strftime('%Y-%m-%d %H:%M:%S')),
        state_dict={'head.' + k: v for k, v in adapter.items()})
    atomic_torch_save(checkpoint, dst)
    return checkpoint


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('src', help='official Meta-Adapter weights file (or a project checkpoint)')
    parser.add_argument('dst', help='output checkpoint')
    parser.add_argument('--feat-dim', type=int, default=None,
                        help='expected feature size D (model.head.feat_dim of the target config)')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    ckpt = convert(args.src, args.dst, args.feat_dim)
    print(f"wrote '{args.dst}': Meta-Adapter for D={ckpt['meta']['feat_dim']} "
          f"({ckpt['meta']['num_params']} parameters) from '{args.src}'")


if __name__ == '__main__':
    main()
