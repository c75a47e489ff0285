# UCF101, few-shot: data/ucf101/split_zhou_UCF101.json, images under data/ucf101/UCF-101-midframes.
# Per-dataset settings of the official Tip-Adapter configs: top-level keys, which the method configs put
# into the head and the loop.
_base_ = ['./fewshot_224.py']
dataset_name = 'ucf101'
num_classes = 101
init_alpha = 3.0
init_beta = 1.0
search_scale = [7, 3]
train_dataloader = dict(dataset=dict(type='CoOpSplitDataset', dataset='ucf101'))
val_dataloader = dict(dataset=dict(type='CoOpSplitDataset', dataset='ucf101'))
test_dataloader = dict(dataset=dict(type='CoOpSplitDataset', dataset='ucf101'))
