import functools
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from mmengine.dataset import BaseDataset
from mmpretrain.registry import DATASETS

from .fewshot import sample_few_shot
from .metadata import resolve_classnames, resolve_templates

IMG_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm', '.tif', '.tiff', '.webp')


@functools.lru_cache(maxsize=16)
def _scan(folder: str, extensions: Tuple[str, ...]) -> Tuple[Tuple[str, ...], Tuple[Tuple[str, int], ...]]:
    """(class folder names, ((relative path, label), ...)) of an image-folder split, sorted.

    Cached, so the preflight check and the runner scan a large folder (ImageNet) once.
    """
    classes = tuple(sorted(e.name for e in os.scandir(folder) if e.is_dir()))
    items = []
    for label, cls in enumerate(classes):
        names = sorted(e.name for e in os.scandir(osp.join(folder, cls))
                       if e.is_file() and e.name.lower().endswith(extensions))
        items.extend((f'{cls}/{n}', label) for n in names)
    return classes, tuple(items)


@DATASETS.register_module()
class FewShotImageFolder(BaseDataset):
    """Train/val/test splits of an image-folder dataset, with seeded K-shot sampling of the train split.

    The layout is ``data_root/<split dir>/<class folder>/<image>``, with class folders sorted to give label
    indices (ImageNet: ``train/<wnid>/*.JPEG`` and ``val/<wnid>/*.JPEG``). The train split is sampled to
    ``num_shots`` images per class with the Dassl algorithm (:func:`sample_few_shot`). When the dataset has
    no validation folder (ImageNet), the validation split is held out from the training images that are not
    in the few-shot sample, ``val_shots`` per class, so hyper-parameters are never chosen on test.

    Args:
        data_root (str): dataset root.
        split (str): 'train', 'val' or 'test'.
        num_shots (int, optional): images per class in the train split; None keeps every image.
        seed (int): few-shot sampling seed. Defaults to 1.
        classnames (str | list[str], optional): prompt names of the classes in label order, or a built-in
            list name ('imagenet', 'digits'). Defaults to the class folder names.
        templates (str | list[str]): prompt templates, or a built-in list name. Defaults to
            ``['a photo of a {}.']``.
        split_dirs (dict): folder of each split under ``data_root``; ``val=None`` holds the validation
            split out of the train folder. Defaults to ``dict(train='train', val='val', test='test')``.
        val_shots (int, optional): images per class of a held-out validation split. Defaults to
            ``min(num_shots, 4)``.
        allow_replacement (bool): sample with replacement for classes with fewer than K images (the
            official behaviour). Defaults to False, which makes such a class an error.
        extensions (tuple[str]): image file extensions.
        **kwargs: passed to :class:`mmengine.dataset.BaseDataset` (``pipeline``, ``test_mode``, ...).
    """

    def __init__(self,
                 data_root: str,
                 split: str = 'train',
                 num_shots: Optional[int] = None,
                 seed: int = 1,
                 classnames: Union[str, Sequence[str], None] = None,
                 templates: Union[str, Sequence[str]] = ('a photo of a {}.', ),
                 split_dirs: Optional[Dict[str, Optional[str]]] = None,
                 val_shots: Optional[int] = None,
                 allow_replacement: bool = False,
                 extensions: Sequence[str] = IMG_EXTENSIONS,
                 **kwargs):
        if split not in ('train', 'val', 'test'):
            raise ValueError(f"split must be 'train', 'val' or 'test', got '{split}'")
        self.split = split
        self.num_shots = num_shots
        self.seed = seed
        self.split_dirs = dict(train='train', val='val', test='test')
        self.split_dirs.update(split_dirs or {})
        self.val_shots = val_shots
        self.allow_replacement = allow_replacement
        self.extensions = tuple(e.lower() for e in extensions)
        self._classnames_arg = classnames
        metainfo = dict(templates=tuple(resolve_templates(templates)))
        if classnames is not None:
            metainfo['classes'] = tuple(resolve_classnames(classnames))
        kwargs.setdefault('test_mode', True)  # a failing image is an error, never silently replaced
        super().__init__(data_root=data_root, metainfo=metainfo, **kwargs)

    # -- helpers -------------------------------------------------------------------------------------
    def _split_folder(self, split: str) -> str:
        if not osp.isdir(self.data_root):
            raise FileNotFoundError(
                f"data root '{self.data_root}' does not exist ({type(self).__name__}, split '{self.split}'); "
                'expected an image-folder dataset <data_root>/<split>/<class>/<image>, see the README data guide')
        folder = osp.join(self.data_root, self.split_dirs[split])
        if not osp.isdir(folder):
            raise FileNotFoundError(
                f"split folder '{folder}' for the {split} split does not exist; expected "
                f'{folder}/<class>/<image> (set split_dirs to point elsewhere)')
        return folder

    def _scan_split(self, split: str):
        folder = self._split_folder(split)
        classes, items = _scan(folder, self.extensions)
        if not classes:
            raise FileNotFoundError(f"split folder '{folder}' has no class sub-folders")
        return folder, classes, items

    def _check_classes(self, folder: str, classes: Sequence[str], reference: Sequence[str]):
        if tuple(classes) != tuple(reference):
            missing = sorted(set(reference) - set(classes))[:5]
            extra = sorted(set(classes) - set(reference))[:5]
            raise ValueError(f"class folders of '{folder}' differ from the train split's: "
                             f'missing {missing}, unexpected {extra}')

    def _sample_train(self, items, names, folder) -> List[int]:
        labels = [label for _, label in items]
        if self.num_shots is None:
            return list(range(len(items)))
        return sample_few_shot(labels, self.num_shots, self.seed, self.allow_replacement,
                               classnames=names, source=f"'{folder}'")

    # -- BaseDataset API -----------------------------------------------------------------------------
    def load_data_list(self) -> List[dict]:
        train_folder, classes, train_items = self._scan_split('train')
        names = list(self._metainfo.get('classes') or classes)
        if len(names) != len(classes):
            raise ValueError(f"'{train_folder}' has {len(classes)} class folders but {len(names)} class "
                             f'names were given (classnames={self._classnames_arg!r})')
        self._metainfo['classes'] = tuple(names)
        self._metainfo['class_folders'] = tuple(classes)

        if self.split == 'train':
            folder, chosen = train_folder, self._sample_train(train_items, names, train_folder)
            items = [train_items[i] for i in chosen]
        elif self.split == 'val' and self.split_dirs['val'] is None:
            folder = train_folder
            k = self.val_shots if self.val_shots is not None else min(self.num_shots or 4, 4)
            exclude = set(self._sample_train(train_items, names, train_folder))
            chosen = sample_few_shot([label for _, label in train_items], k, f'val-{self.seed}',
                                     exclude=exclude, classnames=names,
                                     source=f"'{train_folder}' outside the few-shot sample")
            items = [train_items[i] for i in chosen]
        else:
            folder, split_classes, items = self._scan_split(self.split)
            self._check_classes(folder, split_classes, classes)
        return [dict(img_path=osp.join(folder, rel), gt_label=label) for rel, label in items]

    def _serialize_data(self):
        if not self.data_list:  # e.g. the train split of zero-shot CLIP (num_shots=0)
            return np.zeros(0, dtype=np.uint8), np.zeros(0, dtype=np.int64)
        return super()._serialize_data()

    def split_items(self) -> List[Tuple[str, int]]:
        """(path relative to ``data_root``, label) of every item, in dataset order."""
        return [(osp.relpath(self.get_data_info(i)['img_path'], self.data_root),
                 int(self.get_data_info(i)['gt_label'])) for i in range(len(self))]
