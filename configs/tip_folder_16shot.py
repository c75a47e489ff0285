# Tip-Adapter, CLIP RN50, on your own image folder (configs/_base_/datasets/folder_fewshot.py says how to point it
# at your data): 16 shots, alpha and beta searched on the validation split.
_base_ = ['./_base_/models/clip_rn50.py', './_base_/datasets/folder_fewshot.py',
          './_base_/schedules/training_free.py', './_base_/default_runtime.py']
method = 'Tip-Adapter'
model = dict(head=dict(num_classes={{_base_.num_classes}}, num_shots={{_base_.num_shots}},
                       alpha={{_base_.init_alpha}}, beta={{_base_.init_beta}}))
train_cfg = dict(search_scale={{_base_.search_scale}}, hp_selection={{_base_.hp_selection}})
