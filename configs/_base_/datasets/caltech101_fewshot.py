# Caltech101, few-shot: data/caltech-101/split_zhou_Caltech101.json, images under data/caltech-101/101_ObjectCategories.
# Per-dataset settings of the official Tip-Adapter configs: top-level keys, which the method configs put
# into the head and the loop.
_base_ = ['./fewshot_224.py']
dataset_name = 'caltech101'
num_classes = 100
init_alpha = 3.0
init_beta = 1.0
search_scale = [12, 5]
train_dataloader = dict(dataset=dict(type='CoOpSplitDataset', dataset='caltech101'))
val_dataloader = dict(dataset=dict(type='CoOpSplitDataset', dataset='caltech101'))
test_dataloader = dict(dataset=dict(type='CoOpSplitDataset', dataset='caltech101'))
