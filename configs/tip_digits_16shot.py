# Tip-Adapter on the embedded demo (digits + the project's tiny CLIP). Run through tools/demo.py.
_base_ = [
    './_base_/models/tiny_clip.py',
    './_base_/datasets/digits_fewshot.py',
    './_base_/schedules/training_free.py',
    './_base_/default_runtime.py',
]
method = 'Tip-Adapter'
model = dict(head=dict(num_classes=10, alpha=1., beta=1.))
train_cfg = dict(search_scale=[7, 3])
default_hooks = dict(logger=dict(interval=10))
