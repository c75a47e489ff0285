"""What the project needs on top of mmengine 0.10.7 with current torch (2.6 and newer).

Importing this module registers one file backend (``'atomic_local'``) and patches nothing. Each workaround is
chosen by the config (the backend, :class:`~tip_adapter_mm.engine.hooks.RunCheckHook`) or applied
for the duration of a block (:func:`cached_checkpoint_meta`), so every entry point (the project's tools,
mmpretrain's tools, ``mim``, ``Runner.from_cfg``) runs with the same ones. Each names its upstream bug.
"""
from contextlib import contextmanager

import torch
from mmengine.fileio.backends import LocalBackend, register_backend


class AtomicLocalBackend(LocalBackend):
    """mmengine's local file backend whose ``put`` never leaves a half-written file.

    Upstream: mmengine's ``LocalBackend.put`` (used by ``save_checkpoint``) opens the target with 'wb' and
    writes into it, so a run killed while saving leaves a truncated ``epoch_N.pth`` that ``--resume`` then
    picks up. This backend writes to a temporary file in the same folder and renames it into place. It is
    registered under the name ``'atomic_local'`` and chosen by the configs
    (``CheckpointHook(backend_args=dict(backend='atomic_local'))``), so mmengine's own backend is unchanged.
    """

    def put(self, obj, filepath):
        from .utils.io import atomic_write_path
        with atomic_write_path(str(filepath)) as tmp:
            with open(tmp, 'wb') as f:
                f.write(obj)


register_backend('atomic_local', AtomicLocalBackend, force=True)

#: what the project's checkpoint writes pass to mmengine
ATOMIC_BACKEND_ARGS = dict(backend='atomic_local')


def _cached_pretty_text(original):
    """``Config.pretty_text`` computed once per config content and formatting flag.

    Upstream: mmengine's ``Runner.save_checkpoint`` stores ``cfg.pretty_text`` in every checkpoint's meta,
    and ``pretty_text`` re-formats the whole config with yapf each time (about 0.2 s); with a checkpoint per
    epoch of a training that takes milliseconds per epoch, this formatting dominated the run.
    """
    cache = {}

    def pretty_text(self):
        key = (repr(self._cfg_dict.to_dict()), bool(getattr(self, '_format_python_code', True)))
        if key not in cache:
            if len(cache) > 64:
                cache.clear()
            cache[key] = original.fget(self)
        return cache[key]
    return property(pretty_text)


def _cached_git_hash(original):
    """``get_git_hash`` run once per run.

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


@contextmanager
def cached_checkpoint_meta():
    """Within the block, ``Config.pretty_text`` and ``get_git_hash`` are computed once (see above).

    Used around the fine-tuning loop, which saves a checkpoint per epoch; mmengine is restored when the block
    ends, also on an error, so nothing outside the run changes.
    """
    import mmengine.runner.runner as runner_module
    from mmengine.config import Config
    saved_text, saved_hash = Config.__dict__['pretty_text'], runner_module.get_git_hash
    Config.pretty_text = _cached_pretty_text(saved_text)
    runner_module.get_git_hash = _cached_git_hash(saved_hash)
    try:
        yield
    finally:
        Config.pretty_text = saved_text
        runner_module.get_git_hash = saved_hash


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
