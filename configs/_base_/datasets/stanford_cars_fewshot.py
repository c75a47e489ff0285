# StanfordCars, few-shot: data/stanford_cars/split_zhou_StanfordCars.json, images under data/stanford_cars/(the split file paths).
# Per-dataset settings of the official Tip-Adapter configs: top-level keys, which the method configs put
# into the head and the loop.
_base_ = ['./fewshot_224.py']
dataset_name = 'stanford_cars'
num_classes = 196
init_alpha = 3.0
init_beta = 1.0
search_scale = [20, 10]
train_dataloader = dict(dataset=dict(type='CoOpSplitDataset', dataset='stanford_cars'))
val_dataloader = dict(dataset=dict(type='CoOpSplitDataset', dataset='stanford_cars'))
test_dataloader = dict(dataset=dict(type='CoOpSplitDataset', dataset='stanford_cars'))
