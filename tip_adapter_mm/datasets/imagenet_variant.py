import functools
import os
import os.path as osp
from typing import List, Optional, Sequence, Tuple, Union

from mmpretrain.registry import DATASETS

from .dataset_settings import IMAGENET_VARIANTS
from .few_shot_dataset import FewShotDataset
from .few_shot_image_folder import IMG_EXTENSIONS
from .metadata import resolve_classnames

NUM_IMAGENET_CLASSES = 1000


def read_wnids_file(path: str) -> List[str]:
    """The wnids of a CoOp ``classnames.txt`` (lines ``<wnid> <class name>``), in file order."""
    with open(path) as f:
        return [line.strip().split(' ', 1)[0] for line in f if line.strip()]


def imagenet_wnids(imagenet_root: Optional[str] = None, classnames_file: Optional[str] = None) -> List[str]:
    """ImageNet's 1000 wnids in class-index order (the sorted wnids).

    From a CoOp ``classnames.txt`` (in index order), or the sorted folder names of ``<imagenet_root>/train``
    (or of CoOp's ``<imagenet_root>/images/train``). Both are checked: 1000 distinct wnids, sorted.
    """
    if classnames_file is not None:
        if not osp.isfile(classnames_file):
            raise FileNotFoundError(f"classnames_file '{classnames_file}' does not exist; expected CoOp's "
                                    "ImageNet classnames.txt (lines '<wnid> <class name>')")
        wnids, source = read_wnids_file(classnames_file), f"'{classnames_file}'"
    elif imagenet_root is not None:
        candidates = [osp.join(imagenet_root, 'train'), osp.join(imagenet_root, 'images', 'train')]
        folder = next((c for c in candidates if osp.isdir(c)), None)
        if folder is None:
            raise FileNotFoundError(f"ImageNet train folder '{candidates[0]}' does not exist (imagenet_root="
                                    f"'{imagenet_root}'); expected <imagenet_root>/train/<wnid>/")
        wnids, source = _class_folders(folder), f"the folders of '{folder}'"
    else:
        raise ValueError('imagenet_wnids needs imagenet_root or classnames_file')
    if len(wnids) != NUM_IMAGENET_CLASSES or len(set(wnids)) != len(wnids):
        raise ValueError(f'{source} lists {len(set(wnids))} distinct wnids ({len(wnids)} in all), expected the '
                         f'{NUM_IMAGENET_CLASSES} ImageNet classes')
    if wnids != sorted(wnids):
        raise ValueError(f'the wnids of {source} are not sorted; ImageNet class indices are the positions of the '
                         'sorted wnids, so labels would not match the ImageNet class names')
    return wnids


def _class_folders(folder: str) -> List[str]:
    return sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith('.'))


@functools.lru_cache(maxsize=8)
def _scan(folder: str, mtime: float, extensions: Tuple[str, ...]) -> Tuple[Tuple[str, Tuple[str, ...]], ...]:
    """((class folder, (sorted image names...)), ...) of an image folder, class folders sorted."""
    out = []
    for cls in _class_folders(folder):
        names = sorted(e.name for e in os.scandir(osp.join(folder, cls))
                       if e.is_file() and not e.name.startswith('.') and e.name.lower().endswith(extensions))
        out.append((cls, tuple(names)))
    return tuple(out)


@DATASETS.register_module()
class ImageNetVariant(FewShotDataset):
    """A distribution-shift test set of ImageNet (test split only), labelled in ImageNet's class space.

    Variants and layouts (CoOp ``DATASETS.md`` folders, the default ``data_root`` being ``data/<folder>``):

    - ``'imagenet_v2'``: ``imagenetv2/imagenetv2-matched-frequency-format-val/<class index 0..999>/*``
      (1000 classes);
    - ``'imagenet_sketch'``: ``imagenet-sketch/images/<wnid>/*`` (1000 classes);
    - ``'imagenet_a'``: ``imagenet-adversarial/imagenet-a/<wnid>/*`` (200 classes);
    - ``'imagenet_r'``: ``imagenet-rendition/imagenet-r/<wnid>/*`` (200 classes).

    Labels are ImageNet class indices (0..999) for every variant, so a model built for ImageNet (its 1000-way
    text classifier and cache) applies unchanged; the class names are ImageNet's (open_clip's
    ``IMAGENET_CLASSNAMES``, the built-in ``'imagenet'`` list) and the templates the 7 ``'imagenet'`` ones.
    A wnid folder's index is its position among ImageNet's sorted 1000 wnids, taken from ``classnames_file``
    (CoOp's ``classnames.txt``), else from ``imagenet_root`` (the sorted folder names of
    ``<imagenet_root>/train``), else from ``<data_root>/classnames.txt`` (where CoOp's guide copies it).
    ImageNet-V2 folders are already indices and need no wnid source.

    ImageNet-A and -R hold 200 of the 1000 classes. Accuracy is then the accuracy of the **1000-way**
    prediction (the harder, ImageNet-model view). CoOp instead relabels them 0..199 and classifies among those
    200 classes only, which gives higher numbers; to compare with it, restrict the logits to
    :meth:`subset_classes` (also ``metainfo['subset_classes']``) before the arg-max. That restriction is not
    applied by the project's evaluators yet.

    Only ``split='test'`` is valid: a distribution-shift set has no train or validation split. Use it as the
    ``test_dataloader`` dataset of an ImageNet config (training and validation stay on ImageNet).

    Args:
        data_root (str, optional): the variant's folder, e.g. ``data/imagenet-adversarial``; defaults to
            ``data/<folder>``. CoOp's ``$DATA`` root that holds ``<folder>/`` is accepted too.
        variant (str): 'imagenet_v2', 'imagenet_sketch', 'imagenet_a' or 'imagenet_r'.
        split (str): must be 'test'.
        imagenet_root (str, optional): the ImageNet folder whose ``train/<wnid>`` folder names give the wnid
            order, e.g. ``data/imagenet``.
        classnames_file (str, optional): CoOp's ImageNet ``classnames.txt`` (lines ``<wnid> <class name>`` in
            ImageNet index order).
        image_dir (str, optional): the image folder under ``data_root``; defaults to the variant's.
        classnames (str | list[str]): the 1000 prompt names in ImageNet index order. Defaults to 'imagenet'.
        templates (str | list[str]): prompt templates. Defaults to the 7 'imagenet' templates.
        extensions (tuple[str]): image file extensions.
        **kwargs: see :class:`FewShotDataset` (``skip_unreadable``, ``pipeline``, ...); ``num_shots`` and
            ``seed`` are accepted and unused.
    """

    LAYOUT = '<data_root>/<image_dir>/<class folder>/<image>'

    def __init__(self,
                 data_root: Optional[str] = None,
                 variant: str = 'imagenet_v2',
                 split: str = 'test',
                 imagenet_root: Optional[str] = None,
                 classnames_file: Optional[str] = None,
                 image_dir: Optional[str] = None,
                 classnames: Union[str, Sequence[str], None] = 'imagenet',
                 templates: Union[str, Sequence[str]] = 'imagenet',
                 extensions: Sequence[str] = IMG_EXTENSIONS,
                 **kwargs):
        if variant not in IMAGENET_VARIANTS:
            raise ValueError(f"unknown ImageNet variant '{variant}'; known: {sorted(IMAGENET_VARIANTS)}")
        if split != 'test':
            raise ValueError(f"ImageNetVariant '{variant}' is a test-only distribution-shift set: it has no train or "
                             f"val split (got split='{split}'); use it as the test_dataloader dataset of an "
                             'ImageNet config and keep train/val on ImageNet')
        self.variant = variant
        self.settings = dict(IMAGENET_VARIANTS[variant])
        self.image_dir = (image_dir if image_dir is not None else self.settings['image_dir']).strip('/')
        self.imagenet_root = imagenet_root
        self.classnames_file = classnames_file
        self.extensions = tuple(e.lower() for e in extensions)
        folder = self.settings['folder']
        if data_root is None:
            data_root = osp.join('data', folder)
        elif not osp.isdir(osp.join(data_root, self.image_dir)) and osp.isdir(
                osp.join(data_root, folder, self.image_dir)):
            data_root = osp.join(data_root, folder)  # CoOp's $DATA root
        cls = 'class index 0..999' if self.settings['class_folders'] == 'index' else 'wnid'
        self.LAYOUT = f'<data_root>/{self.image_dir}/<{cls}>/<image> (CoOp layout: data/{folder}/{self.image_dir}/)'
        self._subset: List[int] = []
        super().__init__(data_root=data_root, split=split, classnames=classnames, templates=templates, **kwargs)

    # -- layout ---------------------------------------------------------------------------------------
    def _wnids(self) -> List[str]:
        if self.classnames_file is None and self.imagenet_root is None:
            default = osp.join(self.data_root, 'classnames.txt')
            if not osp.isfile(default):
                raise FileNotFoundError(
                    f"ImageNetVariant '{self.variant}' maps its wnid folders to ImageNet class indices and needs the "
                    f"1000 ImageNet wnids: set imagenet_root (e.g. 'data/imagenet': the sorted folder names of "
                    f"<imagenet_root>/train), or classnames_file (CoOp's classnames.txt, lines '<wnid> <class "
                    f"name>'), or copy CoOp's classnames.txt to '{default}'; see the data guide in the README")
            return imagenet_wnids(classnames_file=default)
        return imagenet_wnids(self.imagenet_root, self.classnames_file)

    def load_splits(self):
        folder = osp.join(self.data_root, self.image_dir) if self.image_dir else self.data_root
        if not osp.isdir(folder):
            raise FileNotFoundError(f"image folder '{folder}' of ImageNet variant '{self.variant}' does not exist; "
                                    f'expected {self.LAYOUT}; see the data guide in the README')
        classes = _scan(folder, os.stat(folder).st_mtime, self.extensions)
        if not classes:
            raise FileNotFoundError(f"image folder '{folder}' of ImageNet variant '{self.variant}' has no class "
                                    f'sub-folders; expected {self.LAYOUT}')
        if self.settings['class_folders'] == 'index':
            bad = [c for c, _ in classes if not (c.isdigit() and int(c) < NUM_IMAGENET_CLASSES)]
            if bad:
                raise ValueError(f"'{folder}': ImageNet-V2 class folders must be the class indices 0..999, found "
                                 f'{bad[:5]}')
            labelled = sorted(((int(c), c, names) for c, names in classes), key=lambda t: t[0])
        else:
            index = {w: i for i, w in enumerate(self._wnids())}
            unknown = [c for c, _ in classes if c not in index]
            if unknown:
                raise ValueError(f"'{folder}': class folders {unknown[:5]} are not ImageNet wnids (of the given wnid "
                                 'list)')
            labelled = [(index[c], c, names) for c, names in classes]
        prefix = f'{self.image_dir}/' if self.image_dir else ''
        test = [(f'{prefix}{c}/{n}', label) for label, c, names in labelled for n in names]
        return dict(classnames=resolve_classnames('imagenet'), num_classes=NUM_IMAGENET_CLASSES, train=[],
                    val=None, test=test)

    def load_data_list(self):
        data_list = super().load_data_list()
        self._subset = sorted({int(d['gt_label']) for d in data_list})
        self._metainfo['subset_classes'] = tuple(self._subset)
        return data_list

    def subset_classes(self) -> List[int]:
        """The ImageNet class indices present in this set (200 for ImageNet-A and -R, 1000 otherwise)."""
        return list(self._subset)
