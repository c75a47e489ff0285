"""Every shim the project needs on top of mmengine 0.10.7 with current torch (2.13 to 2.15).

Each function names the upstream bug it covers. :func:`install` applies the import-time shims; it runs when
``tip_adapter_mm`` is imported (configs import it through ``custom_imports``).
"""
import os.path as osp

import torch

_INSTALLED = False


def _load_local_checkpoint(filename, map_location):
    """mmengine's local checkpoint loader, with ``weights_only=False``.

    Upstream: mmengine 0.10.7 calls ``torch.load(filename, map_location)`` and torch >= 2.6 defaults to
    ``weights_only=True``, so resuming any training checkpoint fails with ``Unsupported global:
    mmengine.logging.history_buffer.HistoryBuffer`` (open-mmlab/mmengine#1655, fix in PR #1650, unreleased).
    Allow-listing the globals would need ``builtins.getattr``, which defeats ``weights_only``; checkpoints are
    trusted files written by the user's own runs.
    """
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint {filename} can not be found')
    return torch.load(filename, map_location=map_location, weights_only=False)


def _atomic_put(self, obj, filepath):
    """``LocalBackend.put`` that never leaves a half-written file.

    Upstream: mmengine's ``LocalBackend.put`` (used by ``save_checkpoint``) opens the target with 'wb' and
    writes into it, so a run killed while saving leaves a truncated ``epoch_N.pth`` that ``--resume`` then
    picks up. Write to a temporary file in the same folder and rename it into place.
    """
    from .utils.io import atomic_write_path
    with atomic_write_path(str(filepath)) as tmp:
        with open(tmp, 'wb') as f:
            f.write(obj)


_PRETTY_TEXT_CACHE = {}


def _cached_pretty_text(original):
    """``Config.pretty_text`` computed once per config content.

    Upstream: mmengine's ``Runner.save_checkpoint`` stores ``cfg.pretty_text`` in every checkpoint's meta,
    and ``pretty_text`` re-formats the whole config with yapf each time (about 0.2 s); with a checkpoint per
    epoch of a training that takes milliseconds per epoch, this formatting dominated the run.
    """
    def pretty_text(self):
        key = repr(self._cfg_dict.to_dict())
        if key not in _PRETTY_TEXT_CACHE:
            if len(_PRETTY_TEXT_CACHE) > 64:
                _PRETTY_TEXT_CACHE.clear()
            _PRETTY_TEXT_CACHE[key] = original.fget(self)
        return _PRETTY_TEXT_CACHE[key]
    return property(pretty_text)


def _cached_git_hash(original):
    """``get_git_hash`` run once per process.

    Upstream: ``Runner.save_checkpoint`` calls ``get_git_hash()``, which forks ``git rev-parse HEAD``, for
    every checkpoint's meta; with a checkpoint per epoch of a few-millisecond epoch, that fork dominates.
    """
    cache = {}

    def get_git_hash(fallback='unknown', digits=None):
        key = (fallback, digits)
        if key not in cache:
            cache[key] = original(fallback, digits)
        return cache[key]
    return get_git_hash


def install():
    """Apply the import-time shims (idempotent)."""
    global _INSTALLED
    if _INSTALLED:
        return
    from mmengine.config import Config
    from mmengine.fileio.backends import LocalBackend
    from mmengine.runner.checkpoint import CheckpointLoader
    CheckpointLoader.register_scheme(prefixes='', force=True)(_load_local_checkpoint)
    LocalBackend.put = _atomic_put
    Config.pretty_text = _cached_pretty_text(Config.pretty_text)
    import mmengine.runner.runner as runner_module
    runner_module.get_git_hash = _cached_git_hash(runner_module.get_git_hash)
    _INSTALLED = True


def init_cpu_distributed(cfg):
    """Start a gloo process group for ``--launcher pytorch`` runs on machines without CUDA.

    Upstream: mmengine 0.10.7 ``_init_dist_pytorch`` calls ``torch.cuda.set_device(local_rank)``
    unconditionally ("Found no NVIDIA driver"), and ``Runner.wrap_model`` passes
    ``device_ids=[LOCAL_RANK]``, which DDP rejects for CPU modules. The Runner skips ``init_dist`` when a
    process group already exists, and ``MODEL_WRAPPERS.build`` keeps an explicit ``device_ids``, so we start
    the group ourselves and set ``device_ids=None``. GPU runs never take this path.

    Args:
        cfg (Config): the run's config, modified in place.
    """
    import torch.distributed as dist
    if torch.cuda.is_available():
        return
    if not dist.is_initialized():
        dist.init_process_group('gloo')
    wrapper = cfg.get('model_wrapper_cfg') or dict(
        type='MMDistributedDataParallel', broadcast_buffers=False,
        find_unused_parameters=cfg.get('find_unused_parameters', False))
    wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper
    cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})['backend'] = 'gloo'
