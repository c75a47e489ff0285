# Zero-shot tiny CLIP on the embedded demo: the baseline.
_base_ = ['./tip_digits_16shot.py']
method = 'Zero-shot CLIP'
num_shots = 0
model = dict(head=dict(alpha=0.))
train_cfg = dict(search=False)
