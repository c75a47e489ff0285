# Tip-Adapter (training-free), CLIP RN50, StanfordCars, 16 shots; alpha/beta searched on the validation split.
_base_ = ['./_base_/models/clip_rn50.py', './_base_/datasets/stanford_cars_fewshot.py',
          './_base_/schedules/training_free.py', './_base_/default_runtime.py']
method = 'Tip-Adapter'
