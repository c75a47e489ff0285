from .coop_split_dataset import CoOpSplitDataset
from .dataset_settings import COOP_DATASETS, IMAGENET_VARIANTS
from .feature_bank_dataset import FeatureBankDataset
from .few_shot_dataset import FewShotDataset
from .few_shot_image_folder import FewShotImageFolder
from .fewshot import group_by_label, sample_few_shot
from .fgvc_aircraft import FGVCAircraft, FewShotFGVCAircraft
from .imagenet_variant import ImageNetVariant
from .metadata import resolve_classnames, resolve_templates
from .seeded_image_dataset import SeededImageDataset
from .transforms import LoadImageRGB

__all__ = ['FewShotDataset', 'FewShotImageFolder', 'FeatureBankDataset', 'SeededImageDataset', 'sample_few_shot', 'group_by_label', 'resolve_classnames',
           'resolve_templates', 'CoOpSplitDataset', 'FewShotFGVCAircraft', 'FGVCAircraft', 'ImageNetVariant', 'LoadImageRGB',
           'COOP_DATASETS', 'IMAGENET_VARIANTS']
