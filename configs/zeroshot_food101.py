# Zero-shot CLIP RN50 on Food101 (the dataset's CoOp prompt): the baseline.
_base_ = ['./tip_food101_16shot.py']
method = 'Zero-shot CLIP'
num_shots = 0
model = dict(head=dict(alpha=0.))
train_cfg = dict(search=False)
