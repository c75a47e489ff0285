from mmengine.hooks import Hook
from mmengine.runner.checkpoint import find_latest_checkpoint
from mmpretrain.registry import HOOKS

from ...settings import check_consistency
from ...utils.checkpoint import message_hub_from_plain, message_hub_to_plain, safe_load


@HOOKS.register_module()
class RunCheckHook(Hook):
    """Check a run before it computes anything, and keep its checkpoints free of code.

    - ``before_run`` checks that every place of a top-level setting holds its value
      (:func:`tip_adapter_mm.settings.check_consistency`: e.g. the head's and the datasets' ``num_shots``),
      so a config edited in one place only is an error under any entry point, also a plain
      ``Runner.from_cfg`` (the project's runner checks it earlier, before the work dir exists).
    - ``before_run`` also reads the checkpoint the run will load or resume from (``load_from``, ``--resume`` with
      or without a path) with ``torch.load(weights_only=True)`` (:func:`~tip_adapter_mm.utils.checkpoint.
      safe_load`): a file that would run code, or that is empty or truncated, stops the run with an error
      naming the file and the cause before mmengine opens it. (Upstream: mmengine 0.10.7 calls ``torch.load``
      without ``weights_only``, which unpickles anything under torch < 2.6 or with
      ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` set, open-mmlab/mmengine#1655.)
    - ``before_save_checkpoint`` stores the message hub's ``HistoryBuffer`` objects as plain lists and
      ``after_load_checkpoint`` turns them back, so resuming needs no unpickling of mmengine classes.

    It patches nothing. The configs name it in ``default_hooks`` (``configs/_base_/default_runtime.py``), so
    every entry point that builds a runner from the config uses it.
    """

    priority = 'VERY_LOW'  # its checkpoint conversion runs after every other hook has edited the checkpoint

    def before_run(self, runner):
        check_consistency(runner.cfg, getattr(runner.cfg, 'filename', None))
        path = runner._load_from
        if runner._resume and path is None:
            path = find_latest_checkpoint(runner.work_dir)
        if path and not str(path).startswith(('http://', 'https://', 'open-mmlab://', 'torchvision://')):
            safe_load(path, map_location='cpu')

    def before_save_checkpoint(self, runner, checkpoint):
        if isinstance(checkpoint.get('message_hub'), dict):
            message_hub_to_plain(checkpoint['message_hub'])

    def after_load_checkpoint(self, runner, checkpoint):
        if isinstance(checkpoint.get('message_hub'), dict):
            message_hub_from_plain(checkpoint['message_hub'])
