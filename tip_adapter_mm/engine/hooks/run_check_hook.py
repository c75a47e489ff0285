import glob
import os.path as osp

from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.runner.checkpoint import find_latest_checkpoint
from mmpretrain.registry import HOOKS

from ...settings import check_backbone, check_consistency
from ...utils.checkpoint import message_hub_from_plain, message_hub_to_plain, safe_load
from ..identity import KEY as IDENTITY
from ..identity import check_identity, run_identity
from ..workdir import check_outputs, lock_work_dir, remove_stale_temporaries

#: the files a run writes into its work dir (besides epoch_N.pth and best_<split>_top1_epoch_N.pth)
OUTPUTS = ('results.json', 'results_test.json', 'fewshot_split.json', 'final.pth', 'epoch_1.pth')


@HOOKS.register_module()
class RunCheckHook(Hook):
    """Check a run before it computes anything, and keep its checkpoints free of code.

    - ``before_run`` checks that every place of a top-level setting holds its value
      (:func:`tip_adapter_mm.settings.check_consistency`: e.g. the head's and the datasets' ``num_shots``),
      so a config edited in one place only is an error under any entry point, also a plain
      ``Runner.from_cfg`` (the project's runner checks it earlier, before the work dir exists).
    - ``before_run`` checks that the pipelines, data preprocessor and head hold the backbone's preprocessing
      and feature size (:func:`tip_adapter_mm.settings.check_backbone`): under a plain ``Runner.from_cfg``, a
      backbone changed without them (which the project's runner would have filled) is an error naming each
      key and the value it needs.
    - ``before_run`` also reads the checkpoint the run will load or resume from (``load_from``, ``--resume`` with
      or without a path) with ``torch.load(weights_only=True)`` (:func:`~tip_adapter_mm.utils.checkpoint.
      safe_load`): a file that would run code, or that is empty or truncated, stops the run with an error
      naming the file and the cause before mmengine opens it. (Upstream: mmengine 0.10.7 calls ``torch.load``
      without ``weights_only``, which unpickles anything under torch < 2.6 or with
      ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` set, open-mmlab/mmengine#1655.)
    - ``before_run`` (rank 0) locks the work dir (another run in it is an error naming its process), removes
      the temporaries a killed save left, and refuses to overwrite a file the project did not write
      (``force_overwrite=True`` / ``--force`` allows it); ``after_run`` releases the lock.
    - ``before_run`` also refuses a checkpoint made by another method or CLIP (recorded in its meta by
      ``before_save_checkpoint``: :mod:`tip_adapter_mm.engine.identity`).
    - ``before_save_checkpoint`` stores the message hub's ``HistoryBuffer`` objects as plain lists and
      ``after_load_checkpoint`` turns them back, so resuming needs no unpickling of mmengine classes.

    It patches nothing. The configs name it in ``default_hooks`` (``configs/_base_/default_runtime.py``), so
    every entry point that builds a runner from the config uses it.
    """

    priority = 'VERY_LOW'  # its checkpoint conversion runs after every other hook has edited the checkpoint

    def __init__(self):
        self._lock = None

    def before_run(self, runner):
        cfg = runner.cfg
        check_consistency(cfg, getattr(cfg, 'filename', None))
        self._check_backbone(cfg)
        if is_main_process():
            self._lock = lock_work_dir(runner.work_dir)
            removed = remove_stale_temporaries(runner.work_dir)
            if removed:
                print_log(f'removed {removed} temporary file(s) of an interrupted save', logger='current')
            epochs = [osp.basename(p) for pattern in ('epoch_*.pth', 'best_*_top1_epoch_*.pth')
                      for p in glob.glob(osp.join(runner.work_dir, pattern))]
            check_outputs(runner.work_dir, OUTPUTS + tuple(epochs), force=bool(cfg.get('force_overwrite')))
        path = cfg.get('load_from')
        if cfg.get('resume') and path is None:
            path = find_latest_checkpoint(runner.work_dir)
        if path and not str(path).startswith(('http://', 'https://', 'open-mmlab://', 'torchvision://')):
            state = safe_load(path, map_location='cpu', mmap=True)
            meta = state.get('meta') if isinstance(state, dict) else None
            check_identity((meta or {}).get(IDENTITY), cfg, path, resume=bool(cfg.get('resume')))
            if cfg.get('resume') and (not isinstance(state, dict) or 'optimizer' not in state
                                      or 'epoch' not in (meta or {})):
                raise ValueError(f"--resume needs a training checkpoint of this run (epoch_N.pth, with its optimizer "
                                 f"and epoch), but '{path}' has none: to start from its weights, use load_from")

    @staticmethod
    def _check_backbone(cfg):
        from mmengine.config import Config

        from ...models.clip_preprocess import clip_preprocess
        filename = getattr(cfg, 'filename', None)
        original = Config.fromfile(filename) if filename and osp.isfile(filename) else None
        check_backbone(cfg, original, clip_preprocess, filename)

    def after_run(self, runner):
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def before_save_checkpoint(self, runner, checkpoint):
        checkpoint.setdefault('meta', {})[IDENTITY] = run_identity(runner.cfg)
        if isinstance(checkpoint.get('message_hub'), dict):
            message_hub_to_plain(checkpoint['message_hub'])

    def after_load_checkpoint(self, runner, checkpoint):
        if isinstance(checkpoint.get('message_hub'), dict):
            message_hub_from_plain(checkpoint['message_hub'])
