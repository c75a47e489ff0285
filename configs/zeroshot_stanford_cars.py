# Zero-shot CLIP RN50 on StanfordCars (the dataset's CoOp prompt): the baseline.
_base_ = ['./tip_stanford_cars_16shot.py']
method = 'Zero-shot CLIP'
num_shots = 0  # no cache: the text classifier alone (one definition: num_shots == 0)
init_alpha = 0.
model = dict(head=dict(num_shots=num_shots, alpha=init_alpha))
train_dataloader = dict(dataset=dict(num_shots=num_shots))
val_dataloader = dict(dataset=dict(num_shots=num_shots))
test_dataloader = dict(dataset=dict(num_shots=num_shots))
train_cfg = dict(search=False)
