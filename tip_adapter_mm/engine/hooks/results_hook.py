import os.path as osp
import time

from mmengine.dist import get_world_size, is_main_process
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmpretrain.registry import HOOKS

from ... import __version__
from ...utils import atomic_json_dump
from ..features import unwrap
from ..record import KEY, get_record, update_record
from ..workdir import WRITTEN_BY
from .build_cache_hook import find_cache_hook, image_dataset

#: record fields that a checkpoint carries from the run that made it
_FROM_CHECKPOINT = ('selection_split', 'val_top1', 'val_size', 'cache_size', 'augment_epochs', 'search_scale',
                    'search_step', 'trained_in', 'max_epochs', 'epoch_top1', 'epoch_top1_split',
                    'epoch_selection', 'selected_epoch', 'selected_epoch_top1')


def _dataset_cfg(cfg, key):
    """The image dataset config of a loader (unwrapping a feature bank)."""
    loader = cfg.get(key) or {}
    dataset = loader.get('dataset', {}) if isinstance(loader, dict) else {}
    return dataset.get('dataset', dataset) if dataset.get('type') == 'FeatureBankDataset' else dataset


@HOOKS.register_module()
class ResultsHook(Hook):
    """Write ``<work_dir>/results.json`` after a training run's test (``results_test.json`` after a test-only
    run, so that testing a checkpoint never overwrites the record of the run that made it), and carry the run
    record in checkpoints.

    The record holds what identifies the run (method, dataset, shots, seed, backbone, weights), what it chose
    (alpha, beta, the split the choice was made on, its validation accuracy), the test accuracy and the
    wall time of each stage. The file is written by the main process through a temporary file and a rename.

    Args:
        filename (str): file name under the work dir of a training run. Defaults to 'results.json'.
        test_filename (str): that of a test-only run. Defaults to 'results_test.json'.
    """

    priority = 'LOW'

    def __init__(self, filename: str = 'results.json', test_filename: str = 'results_test.json'):
        self.filename = filename
        self.test_filename = test_filename
        self._trained = False
        self._start = None
        self._test_start = None

    def before_run(self, runner):
        self._start = time.perf_counter()
        cfg = runner.cfg
        train_ds = _dataset_cfg(cfg, 'train_dataloader') or _dataset_cfg(cfg, 'test_dataloader')
        backbone = cfg.model.get('backbone', {})
        update_record(
            runner,
            method=cfg.get('method', cfg.model.get('head', {}).get('type')),
            # the config's dataset_name; without one (a user's own folder), the name of its data root
            dataset=cfg.get('dataset_name') or (osp.basename(osp.normpath(str(train_ds['data_root'])))
                                                if train_ds.get('data_root') else train_ds.get('type')),
            num_shots=cfg.model.get('head', {}).get('num_shots', train_ds.get('num_shots')),
            seed=train_ds.get('seed'),
            backbone=backbone.get('model_name'),
            pretrained=backbone.get('pretrained'),
            config=cfg.filename,
            work_dir=runner.work_dir,
            world_size=get_world_size(),
            base_classes=cfg.get('base_classes'))

    def before_save_checkpoint(self, runner, checkpoint):
        checkpoint.setdefault('meta', {})[KEY] = get_record(runner)

    def after_load_checkpoint(self, runner, checkpoint):
        saved = checkpoint.get('meta', {}).get(KEY) or {}
        update_record(runner, checkpoint=runner.cfg.get('load_from'), source_dataset=saved.get('dataset'),
                      **{k: saved[k] for k in _FROM_CHECKPOINT if k in saved})

    def before_train(self, runner):
        self._trained = True  # a training run writes results.json; a test-only run its own results_test.json

    def before_test_epoch(self, runner):
        self._test_start = time.perf_counter()

    def after_test_epoch(self, runner, metrics=None):
        metrics = metrics or {}
        head = unwrap(runner.model).head
        record = get_record(runner)
        timings = dict(record.get('timings', {}))
        timings['test'] = round(time.perf_counter() - self._test_start, 3)
        if self._start is not None:
            timings['total'] = round(time.perf_counter() - self._start, 3)
        record.update(
            alpha=float(head.alpha) if hasattr(head, 'alpha') else None,
            beta=float(head.beta) if hasattr(head, 'beta') else None,
            test_top1=_metric(metrics, 'accuracy/top1'), test_top5=_metric(metrics, 'accuracy/top5'),
            test_size=len(runner.test_dataloader.dataset), timings=timings)
        skipped = {}
        cache_hook = find_cache_hook(runner, required=False)
        for split, dataset in (('train', getattr(cache_hook, 'train_images', None)),
                               ('test', image_dataset(runner.test_dataloader.dataset))):
            if dataset is not None and hasattr(dataset, 'metainfo'):
                skipped[split] = len(dataset.metainfo.get('skipped_images') or ())
        record['skipped_images'] = skipped
        for split in ('base', 'novel'):
            if f'{split}/top1' in metrics:
                record[f'test_{split}_top1'] = float(metrics[f'{split}/top1'])
        if record.get('epoch_selection') == 'legacy_test' and record.get('selected_epoch_top1') is not None \
                and record.get('test_top1') is not None:
            # what the official Tip-Adapter-F prints (main.py): the better of the test-selected epoch's test
            # accuracy and the test accuracy after the final search
            record['official_reported_top1'] = max(float(record['selected_epoch_top1']), record['test_top1'])
        record.setdefault('source_dataset', record.get('dataset'))
        record['target_dataset'] = record.get('dataset')
        record.setdefault('selection_split', 'none')
        record['written_by'] = f'{WRITTEN_BY} {__version__}'
        record.update(software_versions())
        record.setdefault('val_top1', None)
        update_record(runner, **record)
        runner.visualizer.add_scalars(run_scalars(record), step=runner.iter)
        if is_main_process():
            path = osp.join(runner.work_dir, self.filename if self._trained else self.test_filename)
            atomic_json_dump(rounded(record), path)
            print_log(f'results written to {path}', logger='current')


def software_versions() -> dict:
    """``versions`` (torch, torchvision, open_clip, mmengine, mmcv, mmpretrain and this package) and
    ``git_commit`` / ``git_dirty`` of this package's source tree (None outside a git checkout), for results.json."""
    import importlib
    import subprocess
    versions = {}
    for name in ('torch', 'torchvision', 'open_clip', 'mmengine', 'mmcv', 'mmpretrain'):
        try:  # the modules' own versions (torch's includes its build, e.g. +cu130)
            versions[name] = getattr(importlib.import_module(name), '__version__', None)
        except ImportError:
            versions[name] = None
    versions['tip_adapter_mm'] = __version__
    source = osp.dirname(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
    commit = dirty = None
    if not osp.exists(osp.join(source, '.git')):  # an installed package: no checkout of its own
        return dict(versions=versions, git_commit=None, git_dirty=None)
    try:
        out = subprocess.run(['git', '-C', source, 'rev-parse', 'HEAD'], capture_output=True, text=True, timeout=10)
        if out.returncode == 0:
            commit = out.stdout.strip()
            status = subprocess.run(['git', '-C', source, 'status', '--porcelain', '--untracked-files=no'],
                                    capture_output=True, text=True, timeout=10)
            dirty = bool(status.stdout.strip()) if status.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        pass
    return dict(versions=versions, git_commit=commit, git_dirty=dirty)


#: the precision of every number in results.json: 6 significant digits (83.3333, 1.17, 0.000123457)
SIGNIFICANT_DIGITS = 6

#: record fields that go to the visualizer (scalars.json, TensorBoard when configured) at the end of a run
SCALARS = ('test_top1', 'test_top5', 'test_base_top1', 'test_novel_top1', 'val_top1', 'alpha', 'beta',
           'selected_epoch', 'selected_epoch_top1', 'official_reported_top1')


def rounded(value, digits: int = SIGNIFICANT_DIGITS):
    """``value`` with every float (in nested dicts and lists too) rounded to ``digits`` significant digits, so
    results.json shows 83.3333 and 1.17 rather than 83.33333333333333 and 1.1699999570846558 (fp32 alpha)."""
    if isinstance(value, float):
        return float(f'{value:.{digits}g}') if value == value and abs(value) != float('inf') else value
    if isinstance(value, dict):
        return {k: rounded(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [rounded(v, digits) for v in value]
    return value


def run_scalars(record: dict) -> dict:
    """The record's numbers that a logger plots: test and validation top-1, alpha, beta, the selected epoch."""
    return {f"{name.replace('_', '/', 1) if name.startswith(('test_', 'val_')) else name}": float(record[name])
            for name in SCALARS if isinstance(record.get(name), (int, float)) and not isinstance(record[name], bool)}


def _metric(metrics, name):
    return float(metrics[name]) if name in metrics else None
