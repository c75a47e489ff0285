# Tip-Adapter (training-free), CLIP RN50, ImageNet, 16 shots.
# Official settings: 7 templates, init alpha 1.17 / beta 1, search scale [beta 7, alpha 3] x [200, 20] steps.
# Change shots or seed with --cfg-options num_shots=8 fewshot_seed=2.
_base_ = [
    './_base_/models/clip_rn50.py',
    './_base_/datasets/imagenet_fewshot.py',
    './_base_/schedules/training_free.py',
    './_base_/default_runtime.py',
]
method = 'Tip-Adapter'
