# Tip-Adapter (training-free), CLIP RN50, Caltech101, 16 shots; alpha/beta searched on the validation split.
_base_ = ['./_base_/models/clip_rn50.py', './_base_/datasets/caltech101_fewshot.py',
          './_base_/schedules/training_free.py', './_base_/default_runtime.py']
method = 'Tip-Adapter'
# the dataset's settings (top-level keys of its _base_ file) where the head and the loop read them
model = dict(head=dict(num_classes={{_base_.num_classes}}, num_shots={{_base_.num_shots}},
                       alpha={{_base_.init_alpha}}, beta={{_base_.init_beta}}))
train_cfg = dict(search_scale={{_base_.search_scale}}, hp_selection={{_base_.hp_selection}})
