# Tip-Adapter on the embedded demo (digits + the project's tiny CLIP). Run through tools/demo.py.
_base_ = [
    './_base_/models/tiny_clip.py',
    './_base_/datasets/digits_fewshot.py',
    './_base_/schedules/training_free.py',
    './_base_/default_runtime.py',
]
method = 'Tip-Adapter'
default_hooks = dict(logger=dict(interval=10))
