import functools
import os
import os.path as osp
from typing import Dict, Optional, Sequence, Tuple

from mmpretrain.registry import DATASETS

from .few_shot_dataset import FewShotDataset

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
class FewShotImageFolder(FewShotDataset):
    """An image-folder dataset: ``data_root/<split dir>/<class folder>/<image>``, class folders sorted.

    ImageNet is one (``train/<wnid>/*.JPEG`` and ``val/<wnid>/*.JPEG``, with ``split_dirs=dict(train='train',
    val=None, test='val')``: no validation folder, so the validation split is held out of the train images
    outside the few-shot sample). See :class:`FewShotDataset` for the sampling and the validation modes.

    Args:
        split_dirs (dict): folder of each split under ``data_root``; ``val=None`` when there is no validation
            folder. Defaults to ``dict(train='train', val='val', test='test')``.
        extensions (tuple[str]): image file extensions.
        **kwargs: see :class:`FewShotDataset` (``data_root``, ``split``, ``num_shots``, ``seed``,
            ``classnames``, ``templates``, ``val_mode``, ...). The class names default to the folder names.
    """

    LAYOUT = '<data_root>/<split>/<class>/<image>'

    def __init__(self, *args, split_dirs: Optional[Dict[str, Optional[str]]] = None,
                 extensions: Sequence[str] = IMG_EXTENSIONS, **kwargs):
        self.split_dirs = dict(train='train', val='val', test='test')
        self.split_dirs.update(split_dirs or {})
        self.extensions = tuple(e.lower() for e in extensions)
        super().__init__(*args, **kwargs)

    def _scan_split(self, split: str):
        folder = osp.join(self.data_root, self.split_dirs[split])
        if not osp.isdir(folder):
            raise FileNotFoundError(
                f"split folder '{folder}' for the {split} split does not exist; expected "
                f'{folder}/<class>/<image> (set split_dirs to point elsewhere)')
        classes, items = _scan(folder, self.extensions)
        if not classes:
            raise FileNotFoundError(f"split folder '{folder}' has no class sub-folders")
        counts = [0] * len(classes)
        for _, label in items:
            counts[label] += 1
        empty = [classes[i] for i, n in enumerate(counts) if n == 0]
        if empty and split == 'train' and self.num_shots != 0:  # zero-shot CLIP needs only the class names
            raise ValueError(f"class folder(s) {[osp.join(folder, c) for c in empty[:5]]} of the {split} split hold "
                             f'no image with an extension in {list(self.extensions)}: add images or remove '
                             'the folder')
        prefix = self.split_dirs[split]
        return folder, classes, [(f'{prefix}/{rel}', label) for rel, label in items]

    def load_splits(self):
        _, classes, train = self._scan_split('train')
        self._metainfo['class_folders'] = tuple(classes)
        splits = dict(classnames=list(classes), train=train, val=None, test=None)
        if self.split in ('val', 'test') and self.split_dirs[self.split] is not None:
            folder, split_classes, items = self._scan_split(self.split)
            if tuple(split_classes) != tuple(classes):
                missing = sorted(set(classes) - set(split_classes))[:5]
                extra = sorted(set(split_classes) - set(classes))[:5]
                raise ValueError(f"class folders of '{folder}' differ from the train split's: "
                                 f'missing {missing}, unexpected {extra}')
            splits[self.split] = items
        return splits
