"""``tools/train.py`` and ``tools/test.py``: mmpretrain's arguments mapped onto the config, nothing more.

The run itself is what the config names: ``runner_type='FewShotRunner'`` checks the settings, data, model and
checkpoint before anything is written (:mod:`tip_adapter_mm.engine.runner`), so mmpretrain's own tools,
``mim`` and these give the same run.
"""
import argparse
import copy
import os
import os.path as osp
import sys

import torch
from mmengine.config import Config, ConfigDict, DictAction

from .cli.configs import resolve_config


def default_work_dir(config_path: str) -> str:
    return osp.join('./work_dirs', osp.splitext(osp.basename(config_path))[0])


def _set_work_dir(cfg: Config, args):
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = default_work_dir(args.config)


def _set_dataloader_defaults(cfg: Config, args, fields, defaults: dict):
    """mmpretrain's defaults for the loaders (the config's own values win), then the --no-* switches."""
    for field in fields:
        if cfg.get(field) is None:
            continue
        loader = ConfigDict(copy.deepcopy(defaults))
        loader.update(cfg[field])
        cfg[field] = loader
        if getattr(args, 'no_pin_memory', False):
            loader['pin_memory'] = False
        if getattr(args, 'no_persistent_workers', False):
            loader['persistent_workers'] = False


def _apply_project_flags(cfg: Config, args) -> Config:
    """The project's own flags: ``--force`` and ``--no-feature-store``."""
    if getattr(args, 'force', False):
        cfg.force_overwrite = True
    if getattr(args, 'no_feature_store', False) and cfg.get('feature_store') is not None:
        cfg.feature_store = dict(cfg.feature_store, enabled=False)
    return cfg


def merge_train_args(cfg: Config, args) -> Config:
    """Map tools/train.py's arguments onto the config, exactly as mmpretrain's tools/train.py does."""
    if args.no_validate:
        cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.launcher = args.launcher
    _set_work_dir(cfg, args)
    if args.amp:
        if not torch.cuda.is_available():
            raise RuntimeError('--amp needs a GPU: mmengine\'s AmpOptimWrapper supports CUDA, NPU, MLU and MUSA '
                               'devices only')
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    if args.auto_scale_lr:
        cfg.auto_scale_lr.enable = True
    _set_dataloader_defaults(cfg, args, ('train_dataloader', 'val_dataloader', 'test_dataloader'),
                             dict(pin_memory=True, persistent_workers=True, collate_fn=dict(type='default_collate')))
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    return _apply_project_flags(cfg, args)


def merge_test_args(cfg: Config, args) -> Config:
    """Map tools/test.py's arguments onto the config, as mmpretrain's tools/test.py does (the checkpoint may
    be left out: the cache is then built from the config)."""
    cfg.launcher = args.launcher
    _set_work_dir(cfg, args)
    cfg.load_from = args.checkpoint
    if getattr(args, 'amp', False):
        cfg.test_cfg.fp16 = True
    if getattr(args, 'show', False) or getattr(args, 'show_dir', None) is not None:
        if 'visualization' not in cfg.get('default_hooks', {}):
            raise ValueError("--show / --show-dir need a visualization hook in default_hooks (the project's "
                             "default_runtime.py has visualization=dict(type='FeatureVisualizationHook'))")
        cfg.default_hooks.visualization.update(enable=True, show=args.show, wait_time=args.wait_time,
                                               out_dir=args.show_dir, interval=args.interval)
    if getattr(args, 'tta', False):
        raise ValueError('--tta is not supported: the test split is read as stored CLIP features, one view per '
                         'image (cache-model heads average augmented views when they build the cache)')
    _set_dataloader_defaults(cfg, args, ('test_dataloader', ),
                             dict(pin_memory=True, collate_fn=dict(type='default_collate')))
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    return _apply_project_flags(cfg, args)


def build_runner(cfg: Config):
    """``RUNNERS.build(cfg)`` when the config names a runner (the project's configs name FewShotRunner),
    else mmengine's Runner, as mmpretrain's tools do."""
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    return Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)


def _set_local_rank(args):
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)


def parse_train_args(argv=None):
    parser = argparse.ArgumentParser(description='Train a model')
    parser.add_argument('config', help='train config file path, or tip_adapter_mm::NAME for a shipped config')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument('--resume', nargs='?', type=str, const='auto',
                        help='resume from this checkpoint, or without a path from the latest checkpoint in '
                        'the work directory')
    parser.add_argument('--amp', action='store_true', help='enable automatic-mixed-precision training')
    parser.add_argument('--no-validate', action='store_true',
                        help='do not evaluate checkpoints during training')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the learning rate by the actual batch size')
    parser.add_argument('--no-pin-memory', action='store_true', help='disable pin_memory in dataloaders')
    parser.add_argument('--no-persistent-workers', action='store_true',
                        help='disable persistent_workers in dataloaders')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value pairs, e.g. num_shots=8 fewshot_seed=2')
    parser.add_argument('--force', action='store_true',
                        help='overwrite files in the work dir that this project did not write')
    parser.add_argument('--no-feature-store', action='store_true',
                        help='encode every image in this run, reading and writing no stored features '
                        '(sets feature_store.enabled=False; results are the same)')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none',
                        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    return parser.parse_args(argv)


def main_train(argv=None):
    """``tools/train.py``: build the runner from a config and arguments, and train."""
    args = parse_train_args(argv)
    args.config = resolve_config(args.config)
    _set_local_rank(args)
    cfg = merge_train_args(Config.fromfile(args.config), args)
    runner = build_runner(cfg)
    try:
        runner.train()
    except KeyboardInterrupt:
        # Ctrl-C: every finished epoch is saved (atomically); say how to go on instead of a traceback
        print(f'\ninterrupted: the finished epochs are saved in {runner.work_dir}; continue with\n'
              f'  python tools/train.py {args.config} --work-dir {runner.work_dir} --resume', file=sys.stderr)
        raise SystemExit(130) from None
    return runner


def parse_test_args(argv=None):
    parser = argparse.ArgumentParser(description='Test (and evaluate) a model')
    parser.add_argument('config', help='test config file path, or tip_adapter_mm::NAME for a shipped config')
    parser.add_argument('checkpoint', nargs='?', default=None,
                        help='checkpoint file; without one the cache is built from the config')
    parser.add_argument('--work-dir', help='the directory to save the file containing evaluation metrics')
    parser.add_argument('--out', help='the file to output results (predictions: a .pkl file; metrics: '
                        'any mmengine.dump format, e.g. .json)')
    parser.add_argument('--out-item', choices=['metrics', 'pred'],
                        help='what --out holds: the metrics, or the predictions (the default)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value pairs')
    parser.add_argument('--force', action='store_true',
                        help='overwrite files in the work dir that this project did not write')
    parser.add_argument('--amp', action='store_true', help='enable automatic-mixed-precision test')
    parser.add_argument('--show-dir', help='directory where the visualization images will be saved')
    parser.add_argument('--show', action='store_true', help='display the prediction results in a window')
    parser.add_argument('--interval', type=int, default=1, help='visualize every interval-th sample')
    parser.add_argument('--wait-time', type=float, default=2, help='the display time of every window (s)')
    parser.add_argument('--no-pin-memory', action='store_true', help='disable pin_memory in dataloaders')
    parser.add_argument('--tta', action='store_true', help="mmpretrain's test-time augmentation: not supported "
                        '(the test split is read as stored features); an error says so')
    parser.add_argument('--no-feature-store', action='store_true',
                        help='encode every image in this run, reading and writing no stored features '
                        '(sets feature_store.enabled=False; results are the same)')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none',
                        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if args.out is None and args.out_item is not None:
        parser.error('--out-item needs --out (the path of the output file)')
    return args


def main_test(argv=None):
    """``tools/test.py``: evaluate a checkpoint (or a cache built from the config) on the test split."""
    args = parse_test_args(argv)
    args.config = resolve_config(args.config)
    _set_local_rank(args)
    cfg = merge_test_args(Config.fromfile(args.config), args)
    if args.out and args.out_item in ('pred', None) and not args.out.endswith(('.pkl', '.pickle')):
        raise ValueError(f"--out '{args.out}': predictions are dumped as a pickle file (.pkl or .pickle), as by "
                         "mmpretrain's tools/test.py; use --out-item metrics for other formats")
    runner = build_runner(cfg)
    if args.out and args.out_item in ('pred', None):
        from mmengine.evaluator import DumpResults
        runner.test_evaluator.metrics.append(DumpResults(out_file_path=args.out))
    metrics = runner.test()
    from mmengine.dist import is_main_process
    if args.out and args.out_item == 'metrics' and is_main_process():
        import mmengine
        from .utils.io import atomic_write_path
        with atomic_write_path(args.out) as tmp:
            mmengine.dump(metrics, tmp, file_format=osp.splitext(args.out)[1][1:] or 'json')
    return metrics

