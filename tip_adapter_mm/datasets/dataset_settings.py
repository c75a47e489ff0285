"""Per-dataset layouts and official Tip-Adapter settings of the 11 few-shot benchmarks (CoOp's suite).

``COOP_DATASETS[name]`` gives, for each dataset:

- ``type``: the dataset class that reads it (:class:`CoOpSplitDataset` for the 9 datasets with a CoOp
  ``split_zhou_<Name>.json``, :class:`FewShotFGVCAircraft` (registered under that name: mmpretrain's
  own ``FGVCAircraft`` takes the plain one), :class:`FewShotImageFolder` for ImageNet);
- ``folder``: the dataset folder under the data root of CoOp's ``DATASETS.md`` (``data/<folder>``);
- ``image_dir``: the folder under ``folder`` that the split file's image paths are relative to (``''``: the
  dataset folder itself, as for Stanford Cars, whose paths are ``cars_train/...`` / ``cars_test/...``);
- ``split_file``: the CoOp split file name (``None`` for FGVC-Aircraft and ImageNet);
- ``templates``: the prompt templates of the official Tip-Adapter code (CoOp's hand-crafted prompt, one
  per dataset; the 7-template ensemble ``'imagenet'`` for ImageNet);
- ``search_scale``: ``[beta, alpha]`` of the hyper-parameter search (``configs/<dataset>.yaml``);
- ``init_alpha``, ``init_beta``: the initial residual ratio and sharpness (the Tip-Adapter values and
  Tip-Adapter-F's starting point);
- ``epochs``: Tip-Adapter-F training epochs (20, EuroSAT 100).

Source: ``gaopengcuhk/Tip-Adapter`` ``configs/*.yaml`` and ``utils.py:clip_classifier`` (see the project
notes), CoOp ``DATASETS.md`` and the Dassl/CoOp dataset readers for the layouts.

``IMAGENET_VARIANTS[name]`` gives the layouts of the four distribution-shift test sets read by
:class:`ImageNetVariant` (CoOp ``DATASETS.md`` folders).
"""
import copy
from typing import Dict

# name: type, folder, image_dir, split_file, templates, search_scale [beta, alpha], init_alpha, init_beta, epochs
_ROWS = [
    ('imagenet', 'FewShotImageFolder', 'imagenet', None, None, 'imagenet', [7, 3], 1.17, 1., 20),
    ('caltech101', 'CoOpSplitDataset', 'caltech-101', '101_ObjectCategories', 'split_zhou_Caltech101.json',
     ['a photo of a {}.'], [12, 5], 3., 1., 20),
    ('oxford_pets', 'CoOpSplitDataset', 'oxford_pets', 'images', 'split_zhou_OxfordPets.json',
     ['a photo of a {}, a type of pet.'], [7, 3], 1.17, 1., 20),
    ('stanford_cars', 'CoOpSplitDataset', 'stanford_cars', '', 'split_zhou_StanfordCars.json',
     ['a photo of a {}.'], [20, 10], 3., 1., 20),
    ('oxford_flowers', 'CoOpSplitDataset', 'oxford_flowers', 'jpg', 'split_zhou_OxfordFlowers.json',
     ['a photo of a {}, a type of flower.'], [50, 50], 10., 1., 20),
    ('food101', 'CoOpSplitDataset', 'food-101', 'images', 'split_zhou_Food101.json',
     ['a photo of {}, a type of food.'], [10, 10], 1.17, 1., 20),
    ('fgvc_aircraft', 'FewShotFGVCAircraft', 'fgvc_aircraft', 'images', None,
     ['a photo of a {}, a type of aircraft.'], [30, 30], 5., 1., 20),
    ('sun397', 'CoOpSplitDataset', 'sun397', 'SUN397', 'split_zhou_SUN397.json',
     ['a photo of a {}.'], [12, 10], 1.17, 1., 20),
    ('dtd', 'CoOpSplitDataset', 'dtd', 'images', 'split_zhou_DescribableTextures.json',
     ['{} texture.'], [13, 13], 2., 1., 20),
    ('eurosat', 'CoOpSplitDataset', 'eurosat', '2750', 'split_zhou_EuroSAT.json',
     ['a centered satellite photo of {}.'], [12, 10], 2., 1., 100),
    ('ucf101', 'CoOpSplitDataset', 'ucf101', 'UCF-101-midframes', 'split_zhou_UCF101.json',
     ['a photo of a person doing {}.'], [7, 3], 3., 1., 20),
]

COOP_DATASETS: Dict[str, dict] = {
    name: dict(type=type_, folder=folder, image_dir=image_dir, split_file=split_file, templates=templates,
               search_scale=search_scale, init_alpha=init_alpha, init_beta=init_beta, epochs=epochs)
    for name, type_, folder, image_dir, split_file, templates, search_scale, init_alpha, init_beta, epochs
    in _ROWS
}

# name: dataset folder, image folder inside it, how class folders are named, number of classes
IMAGENET_VARIANTS: Dict[str, dict] = dict(
    imagenet_v2=dict(folder='imagenetv2', image_dir='imagenetv2-matched-frequency-format-val',
                     class_folders='index', num_classes=1000),
    imagenet_sketch=dict(folder='imagenet-sketch', image_dir='images', class_folders='wnid', num_classes=1000),
    imagenet_a=dict(folder='imagenet-adversarial', image_dir='imagenet-a', class_folders='wnid', num_classes=200),
    imagenet_r=dict(folder='imagenet-rendition', image_dir='imagenet-r', class_folders='wnid', num_classes=200),
)


def coop_dataset_settings(name: str) -> dict:
    """A copy of ``COOP_DATASETS[name]``, with a clear error for an unknown name."""
    if name not in COOP_DATASETS:
        raise KeyError(f"unknown dataset '{name}'; known: {sorted(COOP_DATASETS)}")
    return copy.deepcopy(COOP_DATASETS[name])
