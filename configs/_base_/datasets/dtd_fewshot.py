# DTD, few-shot: data/dtd/split_zhou_DescribableTextures.json, images under data/dtd/images.
# Per-dataset settings of the official Tip-Adapter configs: top-level keys, which the method configs put
# into the head and the loop.
_base_ = ['./fewshot_224.py']
dataset_name = 'dtd'
num_classes = 47
init_alpha = 2.0
init_beta = 1.0
search_scale = [13, 13]
train_dataloader = dict(dataset=dict(type='CoOpSplitDataset', dataset='dtd'))
val_dataloader = dict(dataset=dict(type='CoOpSplitDataset', dataset='dtd'))
test_dataloader = dict(dataset=dict(type='CoOpSplitDataset', dataset='dtd'))
