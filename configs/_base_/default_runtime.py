# Runtime settings shared by every config of the project.
default_scope = 'mmpretrain'
custom_imports = dict(imports=['tip_adapter_mm'], allow_failed_imports=False)
# the runner that every entry point builds (mmpretrain's tools, mim, the project's tools: RUNNERS.build):
# mmengine's Runner after the project's checks (tip_adapter_mm.engine.runner)
runner_type = 'mmpretrain.FewShotRunner'

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50),
    param_scheduler=dict(type='ParamSchedulerHook'),
    # the last epoch only (for --resume; -1 keeps all); the epoch selection keeps the selected epoch's model as
    # best_<split>_top1_epoch_N.pth and the loop saves final.pth; atomic_local: no half-written file
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=1, backend_args=dict(backend='atomic_local')),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    # tools/test.py --show-dir / --show: mmpretrain's hook, drawing the image files of stored features
    visualization=dict(type='FeatureVisualizationHook', enable=False),
    # checks the settings; refuses checkpoints that would run code and keeps the run's own free of code
    run_check=dict(type='RunCheckHook'),
)

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'),
)

vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='UniversalVisualizer', vis_backends=vis_backends)

# every image (and augmented view) is encoded once per backbone and pipeline and kept here for all later runs
# (README: "Feature store"); mode 'content' keys images by a sha256 of their bytes instead of path, size and
# mtime; enabled=False (tools' --no-feature-store) reads and writes nothing, with the same results
feature_store = dict(root='data/features', mode='stat', enabled=True)

log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=1, deterministic=False)
