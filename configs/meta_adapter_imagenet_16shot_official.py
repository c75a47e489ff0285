# Meta-Adapter, CLIP RN50, ImageNet, 16 shots, under Meta-Adapter's OFFICIAL protocol, by name: to compare with
# its published numbers. The project's own protocol on the same data is meta_adapter_imagenet_16shot.py; the
# README's "Differences from the official code" lists what each switch below changes.
# - data_protocol='meta_adapter_official': the official readers' lists, one random.seed(fewshot_seed) stream
#   queries: K images per base class of train; cache: another K per class of train, drawn independently;
#   evaluated: every novel-class image of the ILSVRC val split;
# - hp_selection='legacy_test': the epoch is selected on the test split, as the official code does;
# - train_cfg.precision='official_fp16': the adapter trains in pure fp16 with AdamW eps 1e-4, as the official code.
_base_ = ['./meta_adapter_imagenet_16shot.py']
data_protocol = 'meta_adapter_official'
hp_selection = 'legacy_test'
train_dataloader = dict(dataset=dict(protocol=data_protocol))
val_dataloader = dict(dataset=dict(protocol=data_protocol))
# the official ImageNet test transform: torchvision Resize(224) with its default bilinear interpolation
test_pipeline = [
    dict(type='LoadImageRGB'),
    dict(type='ResizeEdge', scale=224, edge='short', backend='pillow', interpolation='bilinear'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]
test_dataloader = dict(dataset=dict(protocol=data_protocol, pipeline=test_pipeline))
train_cfg = dict(hp_selection=hp_selection, precision='official_fp16')
