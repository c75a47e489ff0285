# SUN397, few-shot: data/sun397/split_zhou_SUN397.json, images under data/sun397/SUN397.
# Per-dataset settings of the official Tip-Adapter configs: top-level keys, which the method configs put
# into the head and the loop.
_base_ = ['./fewshot_224.py']
dataset_name = 'sun397'
num_classes = 397
init_alpha = 1.17
init_beta = 1.0
search_scale = [12, 10]
train_dataloader = dict(dataset=dict(type='CoOpSplitDataset', dataset='sun397'))
val_dataloader = dict(dataset=dict(type='CoOpSplitDataset', dataset='sun397'))
test_dataloader = dict(dataset=dict(type='CoOpSplitDataset', dataset='sun397'))
