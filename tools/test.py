"""Evaluate a saved model on the test split; without a checkpoint, build the cache from the config.

Same arguments as mmpretrain's ``tools/test.py``, except that the checkpoint is optional.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..'))

from mmengine.config import Config, DictAction  # noqa: E402

from tip_adapter_mm.launch import build_runner, merge_common_args  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Test (and evaluate) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', nargs='?', default=None,
                        help='checkpoint file; without one the cache is built from the config')
    parser.add_argument('--work-dir', help='the directory to save the file containing evaluation metrics')
    parser.add_argument('--out', help='dump the predictions to this pickle file')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value pairs')
    parser.add_argument('--no-pin-memory', action='store_true', help='disable pin_memory in dataloaders')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none',
                        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    cfg = merge_common_args(cfg, args)
    cfg.load_from = args.checkpoint
    cfg.resume = False
    runner = build_runner(cfg)
    if args.out:
        from mmengine.evaluator import DumpResults
        runner.test_evaluator.metrics.append(DumpResults(out_file_path=args.out))
    return runner.test()


if __name__ == '__main__':
    main()
