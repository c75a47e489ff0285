# Tip-Adapter-F, CLIP RN50, on your own image folder (configs/_base_/datasets/folder_fewshot.py says how to point
# it at your data): 16 shots, the official fine-tuning recipe, the best validation epoch kept.
_base_ = ['./_base_/models/clip_rn50.py', './_base_/datasets/folder_fewshot.py',
          './_base_/schedules/tip_f.py', './_base_/default_runtime.py']
method = 'Tip-Adapter-F'
model = dict(head=dict(num_classes={{_base_.num_classes}}, num_shots={{_base_.num_shots}},
                       alpha={{_base_.init_alpha}}, beta={{_base_.init_beta}}, train_keys=True))
train_cfg = dict(search_scale={{_base_.search_scale}}, hp_selection={{_base_.hp_selection}})
train_dataloader = dict(batch_size=256)
