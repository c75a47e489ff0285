# The embedded demo: scikit-learn's handwritten digits written as an image folder (tools/demo.py makes
# it): data/digits/{train,val,test}/<digit>/*.png, 32x32. Search on the whole val split, report test.
dataset_name = 'digits'
data_root = 'data/digits'
num_shots = 16
fewshot_seed = 1
fewshot_split_file = None
hp_selection = 'full_val'  # the whole validation split, as the official protocol of the CoOp datasets
num_classes = 10
# the digits are far from the tiny CLIP's noisy captions, so the cache needs a large weight and sharpness
# (the searched values land around beta 15-19, alpha 18-19); these are also the values used without search
init_alpha = 10.
init_beta = 10.
search_scale = [20, 20]

split_dirs = dict(train='train', val='val', test='test')
train_pipeline = [
    dict(type='LoadImageRGB'),  # as Dassl / torchvision: PIL convert('RGB'), no EXIF rotation, alpha dropped
    dict(type='RandomResizedCrop', scale=32, crop_ratio_range=(0.5, 1.0), backend='pillow',
         interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageRGB'),  # as Dassl / torchvision: PIL convert('RGB'), no EXIF rotation, alpha dropped
    dict(type='ResizeEdge', scale=32, edge='short', backend='pillow', interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=32),
    dict(type='PackInputs'),
]

train_dataloader = dict(
    batch_size=64,
    num_workers=0,
    persistent_workers=False,
    collate_fn=dict(type='default_collate'),
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(type='FewShotImageFolder', data_root=data_root, split='train', num_shots=num_shots,
                 seed=fewshot_seed, split_file=fewshot_split_file, classnames='digits', templates='digits',
                 split_dirs=split_dirs, pipeline=train_pipeline),
)
val_dataloader = dict(
    batch_size=128,
    num_workers=0,
    persistent_workers=False,
    collate_fn=dict(type='default_collate'),
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='FewShotImageFolder', data_root=data_root, split='val', num_shots=num_shots,
                 seed=fewshot_seed, split_file=fewshot_split_file, classnames='digits', templates='digits',
                 split_dirs=split_dirs, pipeline=test_pipeline),
)
# base/novel: the split the Meta-Adapter demo uses (7 base digits, 3 novel); every image is classified among
# all 10 classes, and the metric adds the accuracy on the images of each part
base_classes = [0, 1, 2, 3, 4, 5, 6]
val_evaluator = dict(type='BaseNovelAccuracy', base_classes=base_classes, topk=(1, 5))
test_dataloader = dict(
    batch_size=128,
    num_workers=0,
    persistent_workers=False,
    collate_fn=dict(type='default_collate'),
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='FewShotImageFolder', data_root=data_root, split='test', num_shots=num_shots,
                 seed=fewshot_seed, split_file=fewshot_split_file, classnames='digits', templates='digits',
                 split_dirs=split_dirs, pipeline=test_pipeline),
)
test_evaluator = val_evaluator
