# Zero-shot CLIP RN50 on DTD (the dataset's CoOp prompt): the baseline.
_base_ = ['./tip_dtd_16shot.py']
method = 'Zero-shot CLIP'
num_shots = 0
model = dict(head=dict(alpha=0.))
train_cfg = dict(search=False)
