# Zero-shot CLIP RN50 on EuroSAT (the dataset's CoOp prompt): the baseline.
_base_ = ['./tip_eurosat_16shot.py']
method = 'Zero-shot CLIP'
num_shots = 0
model = dict(head=dict(alpha=0.))
train_cfg = dict(search=False)
