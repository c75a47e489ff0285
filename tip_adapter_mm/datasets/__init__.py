from .class_subset_dataset import ClassSubsetDataset
from .feature_bank_dataset import FeatureBankDataset
from .few_shot_dataset import FewShotDataset
from .few_shot_image_folder import FewShotImageFolder
from .fewshot import group_by_label, sample_few_shot
from .metadata import resolve_classnames, resolve_templates

__all__ = ['FewShotDataset', 'FewShotImageFolder', 'FeatureBankDataset', 'ClassSubsetDataset', 'sample_few_shot', 'group_by_label', 'resolve_classnames',
           'resolve_templates']
