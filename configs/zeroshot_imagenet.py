# Zero-shot CLIP RN50 on ImageNet (7 templates): the baseline. No cache, nothing searched; the validation
# accuracy is reported on a held-out split of 4 train images per class.
_base_ = ['./tip_imagenet_16shot.py']
method = 'Zero-shot CLIP'
num_shots = 0  # no cache: the text classifier alone (one definition: num_shots == 0)
init_alpha = 0.
model = dict(head=dict(num_shots=num_shots, alpha=init_alpha))
train_dataloader = dict(dataset=dict(num_shots=num_shots))
val_dataloader = dict(dataset=dict(num_shots=num_shots, val_shots=4))
test_dataloader = dict(dataset=dict(num_shots=num_shots))
train_cfg = dict(search=False)
