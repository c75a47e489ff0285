# OxfordPets, few-shot: data/oxford_pets/split_zhou_OxfordPets.json, images under data/oxford_pets/images.
# Per-dataset settings of the official Tip-Adapter configs: top-level keys, which the method configs put
# into the head and the loop.
_base_ = ['./fewshot_224.py']
dataset_name = 'oxford_pets'
num_classes = 37
init_alpha = 1.17
init_beta = 1.0
search_scale = [7, 3]
train_dataloader = dict(dataset=dict(type='CoOpSplitDataset', dataset='oxford_pets'))
val_dataloader = dict(dataset=dict(type='CoOpSplitDataset', dataset='oxford_pets'))
test_dataloader = dict(dataset=dict(type='CoOpSplitDataset', dataset='oxford_pets'))
