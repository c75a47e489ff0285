# Tip-Adapter-F on the embedded demo: the recipe of configs/tip_f_imagenet_16shot.py.
_base_ = [
    './_base_/models/tiny_clip.py',
    './_base_/datasets/digits_fewshot.py',
    './_base_/schedules/tip_f.py',
    './_base_/default_runtime.py',
]
method = 'Tip-Adapter-F'
model = dict(head=dict(train_keys=True))
train_dataloader = dict(batch_size=256)
default_hooks = dict(logger=dict(interval=10))
