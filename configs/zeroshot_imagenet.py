# Zero-shot CLIP RN50 on ImageNet (7 templates): the baseline. No cache, nothing searched; the validation
# accuracy is reported on a held-out split of 4 train images per class.
_base_ = ['./tip_imagenet_16shot.py']
method = 'Zero-shot CLIP'
num_shots = 0
model = dict(head=dict(alpha=0.))
val_dataloader = dict(dataset=dict(val_shots=4))
train_cfg = dict(search=False)
