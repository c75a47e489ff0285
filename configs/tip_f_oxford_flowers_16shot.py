# Tip-Adapter-F, CLIP RN50, Flowers102, 16 shots (the recipe of configs/tip_f_imagenet_16shot.py).
_base_ = ['./_base_/models/clip_rn50.py', './_base_/datasets/oxford_flowers_fewshot.py',
          './_base_/schedules/tip_f.py', './_base_/default_runtime.py']
method = 'Tip-Adapter-F'
model = dict(head=dict(train_keys=True))
