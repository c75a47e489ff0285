# EuroSAT, few-shot: data/eurosat/split_zhou_EuroSAT.json, images under data/eurosat/2750.
# Per-dataset settings of the official Tip-Adapter configs: top-level keys, which the method configs put
# into the head and the loop.
_base_ = ['./fewshot_224.py']
dataset_name = 'eurosat'
num_classes = 10
init_alpha = 2.0
init_beta = 1.0
search_scale = [12, 10]
train_dataloader = dict(dataset=dict(type='CoOpSplitDataset', dataset='eurosat'))
val_dataloader = dict(dataset=dict(type='CoOpSplitDataset', dataset='eurosat'))
test_dataloader = dict(dataset=dict(type='CoOpSplitDataset', dataset='eurosat'))
