# Food101, few-shot: data/food-101/split_zhou_Food101.json, images under data/food-101/images.
# Per-dataset settings of the official Tip-Adapter configs: top-level keys, which the method configs put
# into the head and the loop.
_base_ = ['./fewshot_224.py']
dataset_name = 'food101'
num_classes = 101
init_alpha = 1.17
init_beta = 1.0
search_scale = [10, 10]
train_dataloader = dict(dataset=dict(type='CoOpSplitDataset', dataset='food101'))
val_dataloader = dict(dataset=dict(type='CoOpSplitDataset', dataset='food101'))
test_dataloader = dict(dataset=dict(type='CoOpSplitDataset', dataset='food101'))
