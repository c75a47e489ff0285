import copy
import inspect
import os.path as osp

from mmengine.config import Config
from mmengine.runner import Runner
from mmpretrain.registry import RUNNERS

from ... import compat
from ...settings import apply_backbone, check_overrides, resolve
from .preflight import preflight


#: top-level keys read when a run starts, besides the settings: mmengine Runner's arguments and what the
#: project's tools, mmengine and the results read
RUNTIME_KEYS = (set(inspect.signature(Runner.__init__).parameters) - {'self'}) | {
    'launcher', 'runner_type', 'custom_imports', 'default_scope', 'model_wrapper_cfg', 'find_unused_parameters',
    'gpu_ids', 'dist_params', 'tta_model', 'tta_pipeline', 'method', 'dataset_name', 'work_dir',
    'log_processor', 'visualizer', 'vis_backends', 'auto_scale_lr', 'filename', 'compile', 'strategy',
    'force_overwrite', 'feature_store'}


def resolve_config(cfg):
    """Apply the changed top-level settings of ``cfg`` against its file (in place); see :class:`FewShotRunner`.

    Then fills the places that hold the backbone's values (pipeline sizes and interpolation, the data
    preprocessor's mean and std, the head's ``feat_dim``: :func:`tip_adapter_mm.settings.backbone_updates`),
    e.g. after ``--cfg-options model.backbone.model_name=ViT-B-16 model.backbone.pretrained=laion2b_s34b_b88k``.

    Also turns off ``persistent_workers`` of loaders without workers: mmpretrain's tools/train.py defaults
    it to True, which torch refuses with ``num_workers=0`` (one process gives fresh randomness every pass
    anyway, so the run is the same).
    """
    filename = getattr(cfg, 'filename', None)
    original = Config.fromfile(filename) if filename and osp.isfile(filename) else None
    if original is not None:
        check_overrides(cfg, original, RUNTIME_KEYS)
    resolve(cfg, original)
    from ...models.clip_preprocess import clip_preprocess
    apply_backbone(cfg, original, clip_preprocess)
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg.get(key)
        if loader and not loader.get('num_workers', 0):
            loader['persistent_workers'] = False
    return cfg


def prepare_config(cfg):
    """What the project's runner does to a config before building (in place); see :class:`FewShotRunner`."""
    resolve_config(cfg)
    preflight(cfg)
    if cfg.get('launcher', 'none') != 'none':
        compat.init_cpu_distributed(cfg)
    return cfg


@RUNNERS.register_module()
class FewShotRunner(Runner):
    """mmengine's Runner, preceded by the project's checks; named by the configs (``runner_type``).

    mmpretrain's ``tools/train.py`` / ``tools/test.py``, ``mim train/test mmpretrain`` and the project's
    tools build it with ``RUNNERS.build(cfg)``. Before the runner exists (so before its work dir, log or any
    output), :meth:`from_cfg`

    1. applies changed top-level settings (``--cfg-options num_shots=8``) to every place that holds them and
       refuses a place changed alone (:func:`tip_adapter_mm.settings.resolve`), and puts the backbone's
       preprocessing and feature size (read from open_clip) into the places that hold them
       (:func:`tip_adapter_mm.settings.apply_backbone`): a backbone switch is one override;
    2. checks datasets, model, checkpoint and training settings
       (:func:`~tip_adapter_mm.engine.runner.preflight.preflight`);
    3. for ``--launcher pytorch`` on a machine without CUDA, starts a gloo process group
       (:func:`tip_adapter_mm.compat.init_cpu_distributed`).

    Everything else is mmengine's Runner: a config built by a plain ``Runner.from_cfg`` runs the same
    experiment (its settings are checked by :class:`~tip_adapter_mm.engine.RunCheckHook`).
    """

    @classmethod
    def from_cfg(cls, cfg) -> 'FewShotRunner':
        cfg = prepare_config(copy.deepcopy(cfg))
        return super().from_cfg(cfg)
