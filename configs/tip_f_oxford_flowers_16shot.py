# Tip-Adapter-F, CLIP RN50, Flowers102, 16 shots (the recipe of configs/tip_f_imagenet_16shot.py).
_base_ = ['./_base_/models/clip_rn50.py', './_base_/datasets/oxford_flowers_fewshot.py',
          './_base_/schedules/tip_f.py', './_base_/default_runtime.py']
method = 'Tip-Adapter-F'
# the dataset's settings (top-level keys of its _base_ file) where the head and the loop read them
model = dict(head=dict(num_classes={{_base_.num_classes}}, num_shots={{_base_.num_shots}},
                       alpha={{_base_.init_alpha}}, beta={{_base_.init_beta}}, train_keys=True))
train_cfg = dict(search_scale={{_base_.search_scale}}, hp_selection={{_base_.hp_selection}})
