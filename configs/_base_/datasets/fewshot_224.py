# Shared settings of the few-shot datasets: the official augmentation and CLIP's
# preprocessing, loaders for the train / val / test splits. Each dataset file inherits this one and names its
# dataset (the CoOp split-file datasets by default); see the README data guide.
# One top-level key per setting; --cfg-options num_shots=8 fewshot_seed=2 changes it in every place below
# and in the head (tip_adapter_mm.settings lists them all).
# The 224 px and bicubic resize below are the default backbone's (RN50 + openai, open_clip's preprocessing):
# the project's runner replaces them with another backbone's (e.g. 336 px for ViT-L-14-336) unless a config
# sets its own (tip_adapter_mm.settings.backbone_updates).
num_shots = 16
fewshot_seed = 1
fewshot_split_file = None  # an earlier run's fewshot_split.json: its sampled lists instead of the seed
hp_selection = 'full_val'  # the official protocol of the 10 datasets: search on the whole validation split

train_pipeline = [  # the official cache / fine-tuning augmentation
    dict(type='LoadImageRGB'),  # as Dassl / torchvision: PIL convert('RGB'), no EXIF rotation, alpha dropped
    dict(type='RandomResizedCrop', scale=224, crop_ratio_range=(0.5, 1.0), backend='pillow',
         interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [  # CLIP's preprocess
    dict(type='LoadImageRGB'),  # as Dassl / torchvision: PIL convert('RGB'), no EXIF rotation, alpha dropped
    dict(type='ResizeEdge', scale=224, edge='short', backend='pillow', interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=256,
    num_workers=8,
    persistent_workers=True,
    collate_fn=dict(type='default_collate'),
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(type='CoOpSplitDataset', split='train', num_shots=num_shots, seed=fewshot_seed,
                 split_file=fewshot_split_file, pipeline=train_pipeline),
)
val_dataloader = dict(
    batch_size=64,
    num_workers=8,
    persistent_workers=True,
    collate_fn=dict(type='default_collate'),
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='CoOpSplitDataset', split='val', num_shots=num_shots, seed=fewshot_seed,
                 split_file=fewshot_split_file, pipeline=test_pipeline),
)
val_evaluator = dict(type='TopKAccuracy', topk=(1, 5))  # mmpretrain's Accuracy, keeping one integer per image
test_dataloader = dict(
    batch_size=64,
    num_workers=8,
    persistent_workers=True,
    collate_fn=dict(type='default_collate'),
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='CoOpSplitDataset', split='test', num_shots=num_shots, seed=fewshot_seed,
                 split_file=fewshot_split_file, pipeline=test_pipeline),
)
test_evaluator = val_evaluator
