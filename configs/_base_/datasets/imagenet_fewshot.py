# ImageNet, few-shot: data/imagenet/train/<wnid>/*.JPEG and data/imagenet/val/<wnid>/*.JPEG.
# The cache is K images per class from train; the validation split (for alpha/beta) is held out of the
# remaining train images (min(K, 4) per class); the test split is the 50k ILSVRC val images.
# num_shots and fewshot_seed are set once here and copied into the datasets and the head by the tools.
dataset_name = 'imagenet'
data_root = 'data/imagenet'
num_shots = 16
fewshot_seed = 1
# what alpha/beta (and Tip-Adapter-F's epoch) are chosen on: ImageNet has no validation split, so its
# validation images are held out of train, min(K, 4) per class ('legacy_test': the official test tuning)
hp_selection = 'fewshot_val'
# the official settings (configs/imagenet.yaml): copied into the model and the loop
num_classes = 1000
init_alpha = 1.17
init_beta = 1.
search_scale = [7, 3]

split_dirs = dict(train='train', val=None, test='val')
train_pipeline = [  # the official cache / fine-tuning augmentation
    dict(type='LoadImageFromFile', imdecode_backend='pillow'),
    dict(type='RandomResizedCrop', scale=224, crop_ratio_range=(0.5, 1.0), backend='pillow',
         interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [  # CLIP's preprocess
    dict(type='LoadImageFromFile', imdecode_backend='pillow'),
    dict(type='ResizeEdge', scale=224, edge='short', backend='pillow', interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]

train_dataloader = dict(
    batch_size=256,
    num_workers=8,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(type='FewShotImageFolder', data_root=data_root, split='train', num_shots=num_shots,
                 seed=fewshot_seed, classnames='imagenet', templates='imagenet', split_dirs=split_dirs,
                 pipeline=train_pipeline),
)
val_dataloader = dict(
    batch_size=64,
    num_workers=8,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='FewShotImageFolder', data_root=data_root, split='val', num_shots=num_shots,
                 seed=fewshot_seed, classnames='imagenet', templates='imagenet', split_dirs=split_dirs,
                 pipeline=test_pipeline),
)
val_evaluator = dict(type='Accuracy', topk=(1, 5))
test_dataloader = dict(
    batch_size=64,
    num_workers=8,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='FewShotImageFolder', data_root=data_root, split='test', num_shots=num_shots,
                 seed=fewshot_seed, classnames='imagenet', templates='imagenet', split_dirs=split_dirs,
                 pipeline=test_pipeline),
)
test_evaluator = val_evaluator
