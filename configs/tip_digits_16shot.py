# Tip-Adapter on the embedded demo (digits + the project's tiny CLIP). Run through tools/demo.py.
_base_ = [
    './_base_/models/tiny_clip.py',
    './_base_/datasets/digits_fewshot.py',
    './_base_/schedules/training_free.py',
    './_base_/default_runtime.py',
]
method = 'Tip-Adapter'
# the digits are far from the tiny CLIP's noisy captions, so the cache needs a large weight and sharpness
# (the searched values land around beta 15-19, alpha 18-19); these are also the values used without search
model = dict(head=dict(num_classes=10, alpha=10., beta=10.))
train_cfg = dict(search_scale=[20, 20])
default_hooks = dict(logger=dict(interval=10))
