# Flowers102, few-shot: data/oxford_flowers/split_zhou_OxfordFlowers.json, images under data/oxford_flowers/jpg.
# Per-dataset settings of the official Tip-Adapter configs: top-level keys, which the method configs put
# into the head and the loop.
_base_ = ['./fewshot_224.py']
dataset_name = 'oxford_flowers'
num_classes = 102
init_alpha = 10.0
init_beta = 1.0
search_scale = [50, 50]
train_dataloader = dict(dataset=dict(type='CoOpSplitDataset', dataset='oxford_flowers'))
val_dataloader = dict(dataset=dict(type='CoOpSplitDataset', dataset='oxford_flowers'))
test_dataloader = dict(dataset=dict(type='CoOpSplitDataset', dataset='oxford_flowers'))
