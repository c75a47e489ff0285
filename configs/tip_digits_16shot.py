# Tip-Adapter on the embedded demo (digits + the project's tiny CLIP). Run through tools/demo.py.
_base_ = [
    './_base_/models/tiny_clip.py',
    './_base_/datasets/digits_fewshot.py',
    './_base_/schedules/training_free.py',
    './_base_/default_runtime.py',
]
method = 'Tip-Adapter'
# the dataset's settings (top-level keys of its _base_ file) where the head and the loop read them
model = dict(head=dict(num_classes={{_base_.num_classes}}, num_shots={{_base_.num_shots}},
                       alpha={{_base_.init_alpha}}, beta={{_base_.init_beta}}))
train_cfg = dict(search_scale={{_base_.search_scale}}, hp_selection={{_base_.hp_selection}})
default_hooks = dict(logger=dict(interval=10))
