"""Split a dataset's classes into base and novel by zero-shot accuracy on the training supports.

The official Meta-Adapter protocol ranks the classes by zero-shot CLIP accuracy (easy classes are base,
hard ones novel, about 70 % base). This tool computes the ranking on the K-shot training images of the
config's train split only (the cache features), never on test, and prints / writes the split:

    python tools/rank_classes.py configs/meta_adapter_imagenet_16shot.py --ratio 0.7 --out base_novel.json
    python tools/train.py configs/meta_adapter_imagenet_16shot.py --cfg-options "base_classes=[...]"
"""
import argparse
import json
import os.path as osp
import sys

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..'))

from mmengine.config import Config, DictAction  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Rank classes by zero-shot accuracy on training supports')
    parser.add_argument('config', help='config file (its train split and backbone are used)')
    parser.add_argument('--ratio', type=float, default=0.7, help='fraction of classes that are base')
    parser.add_argument('--out', help='write {"base": [...], "novel": [...], "accuracy": [...]} here')
    parser.add_argument('--work-dir', help='work dir of the encoding run')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='override config settings')
    return parser.parse_args(argv)


def main(argv=None):
    from tip_adapter_mm.engine.features import unwrap
    from tip_adapter_mm.engine.hooks.build_cache_hook import find_cache_hook
    from tip_adapter_mm.functional import cache_keys_from_views, rank_classes_by_zero_shot
    from tip_adapter_mm.launch import build_runner, default_work_dir
    from tip_adapter_mm.utils import atomic_json_dump

    args = parse_args(argv)
    if not 0 < args.ratio < 1:
        raise ValueError(f'--ratio must lie in (0, 1), got {args.ratio}')
    cfg = Config.fromfile(args.config)
    cfg.launcher = 'none'
    cfg.work_dir = args.work_dir or cfg.get('work_dir') or default_work_dir(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    cfg.pop('base_classes', None)
    runner = build_runner(cfg)
    hook = find_cache_hook(runner)
    hook.build(runner)
    head = unwrap(runner.model).head
    if hook.view_features is None:
        raise ValueError('the config has no K-shot cache to rank the classes on (num_shots=0?)')
    keys = cache_keys_from_views(hook.view_features)
    order, accuracy = rank_classes_by_zero_shot(keys, hook.view_labels, head.clip_weights.cpu())
    num_base = round(args.ratio * len(order))
    split = dict(base=sorted(order[:num_base]), novel=sorted(order[num_base:]), ranking=order, accuracy=accuracy,
                 ratio=args.ratio, config=args.config)
    if args.out:
        atomic_json_dump(split, args.out)
    print(json.dumps(dict(base=split['base'], novel=split['novel'])))
    return split


if __name__ == '__main__':
    main()
