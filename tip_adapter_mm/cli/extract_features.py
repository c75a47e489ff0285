"""``tools/extract_features.py`` / ``tip-adapter-extract``: encode a config's splits into the feature store.

Usage::

    python tools/extract_features.py CONFIG [--splits train val test] [--views 10] [--cfg-options ...]
    bash tools/dist_extract_features.sh CONFIG 8 [--splits test]        # N processes, one store

Every split is read exactly as a run of CONFIG reads it (the few-shot train sample of its shots and seed,
the validation split of its protocol, the test split), through the same pipeline and backbone, so the runs
that follow find their features stored and encode nothing. Only what the store lacks is encoded, with a
progress bar; the missing images are split across processes.
"""
import argparse
import copy
import os
import sys
from typing import List, Optional

SPLITS = ('train', 'val', 'test')


def parse_args(argv=None):
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(description='Encode the splits of a config into its feature store')
    parser.add_argument('config', help='config file path, or tip_adapter_mm::NAME for a shipped config')
    parser.add_argument('--splits', nargs='+', choices=SPLITS, default=list(SPLITS),
                        help='splits to encode (default: all three)')
    parser.add_argument('--views', type=int, default=None,
                        help='augmented views per few-shot train image (default: the config\'s '
                        'BuildCacheHook.augment_epochs)')
    parser.add_argument('--batch-size', type=int, default=None,
                        help='images per forward pass (default: each split\'s dataloader batch size)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings of the config, as for tools/train.py')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none',
                        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if args.views is not None and args.views < 1:
        parser.error(f'--views must be >= 1, got {args.views}')
    if args.batch_size is not None and args.batch_size < 1:
        parser.error(f'--batch-size must be >= 1, got {args.batch_size}')
    return args


def _cache_hook_cfg(cfg) -> dict:
    for hook in cfg.get('custom_hooks') or []:
        if hook.get('type') in ('BuildCacheHook', 'mmpretrain.BuildCacheHook'):
            return hook
    return {}


def extract(cfg, splits: List[str], views: Optional[int] = None, batch_size: Optional[int] = None) -> List[dict]:
    """Encode ``splits`` of the prepared config ``cfg`` into its store; one summary dict per split."""
    import torch
    from mmengine.device import get_device
    from mmengine.logging import print_log
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import DATASETS, MODELS

    from ..engine.features import check_store_cfg, extract_features, store_args
    from ..engine.hooks.build_cache_hook import image_dataset_cfg, split_overrides
    from ..protocol import get_protocol

    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    model = MODELS.build(copy.deepcopy(cfg.model)).to(get_device())  # builders add keys to what they get
    hook = _cache_hook_cfg(cfg)
    val_mode = get_protocol((cfg.get('train_cfg') or {}).get('hp_selection', 'full_val')).val_mode
    store = check_store_cfg(cfg.get('feature_store'))
    summary = []
    for split in splits:
        loader = cfg.get(f'{split}_dataloader')
        if not loader:
            print_log(f'{split}: the config has no {split}_dataloader; skipped', logger='current')
            continue
        dataset_cfg = dict(image_dataset_cfg(loader['dataset']))
        dataset_cfg.update(split_overrides(cfg, split, val_mode))
        dataset = DATASETS.build(dataset_cfg)
        if split == 'train':
            num_views = views or hook.get('augment_epochs', 10)
            seed = hook.get('seed') if hook.get('seed') is not None else getattr(dataset, 'seed', 0)
        else:
            num_views, seed = 1, 0
        if len(dataset) == 0:
            print_log(f'{split}: empty; skipped', logger='current')
            continue
        feats, _, encoded = extract_features(
            model, dataset, num_views=num_views, seed=seed, batch_size=batch_size or loader.get('batch_size', 64),
            num_workers=loader.get('num_workers', 0), desc=split, **store_args(cfg, dataset_cfg))
        summary.append(dict(split=split, images=len(dataset), views=num_views, encoded=encoded,
                            stored=feats.shape[0] * feats.shape[1] - encoded, dim=int(feats.shape[2])))
        torch.cuda.empty_cache() if torch.cuda.is_available() else None
    print_log('feature store ' + store['root'] + ':\n' + '\n'.join(
        f"  {s['split']:<5} {s['images']:>7} images x {s['views']:>2} view(s), {s['dim']}-d: "
        f"{s['encoded']} encoded now, {s['stored']} already stored" for s in summary), logger='current')
    return summary


def main(argv=None):
    from mmengine.config import Config
    from mmengine.dist import init_dist, is_distributed

    from ..engine.features import check_store_cfg
    from ..engine.runner.fewshot_runner import prepare_config
    from .configs import resolve_config

    args = parse_args(argv)
    args.config = resolve_config(args.config)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    cfg.launcher = args.launcher
    store = check_store_cfg(cfg.get('feature_store'))
    if not store or not store['enabled']:
        raise SystemExit(f"{args.config}: feature_store is off ({cfg.get('feature_store')!r}); nothing to "
                         "extract into (set feature_store=dict(root='data/features'))")
    cfg.load_from = None  # a checkpoint has nothing to do with the features
    prepare_config(cfg)  # the run's settings, checks and (on CPU) the gloo process group
    if args.launcher != 'none' and not is_distributed():
        init_dist(args.launcher, **(cfg.get('env_cfg', {}).get('dist_cfg') or {}))
    extract(cfg, args.splits, args.views, args.batch_size)
    return 0


if __name__ == '__main__':
    sys.exit(main())
