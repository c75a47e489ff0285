import functools
import os
import os.path as osp
from collections.abc import Mapping
from typing import Dict, List, Optional, Sequence, Tuple

from mmengine.logging import print_log
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


def read_classnames_file(path: str) -> List[Tuple[str, str]]:
    """CoOp's ImageNet ``classnames.txt``: its lines ``<wnid> <class name>`` as ``(wnid, class name)`` pairs,
    in file order (as CoOp's ``ImageNet.read_classnames`` splits them; blank lines skipped).

    Args:
        path (str): the file.
    """
    pairs = []
    with open(path) as f:
        for line in f:
            parts = line.strip().split(' ')
            if parts != ['']:
                pairs.append((parts[0], ' '.join(parts[1:])))
    return pairs


@DATASETS.register_module()
class FewShotImageFolder(FewShotDataset):
    """An image-folder dataset: ``data_root/<split dir>/<class folder>/<image>``, class folders sorted.

    ImageNet is one (``split_dirs=dict(train='train', val=None, test='val')``: no validation folder, so the
    validation split is held out of the train images outside the few-shot sample), in either layout, detected
    from where the train folder is:

    - ``<data_root>/train/<wnid>/*.JPEG`` and ``<data_root>/val/<wnid>/*.JPEG``;
    - CoOp's ``DATASETS.md`` layout: ``<data_root>/images/train/<wnid>/*``, ``<data_root>/images/val/<wnid>/*``
      and ``<data_root>/classnames.txt`` (lines ``<wnid> <class name>``, which give the default class names;
      explicit ``classnames`` win). Item paths are then ``images/train/...``.

    Both layouts give the same sampled lists: labels are the positions of the sorted class folders (as CoOp),
    and the images of a class are sorted by name (CoOp lists them in ``os.listdir`` order, which depends on
    the file system). See :class:`FewShotDataset` for the sampling and the validation modes; a class with
    fewer than K images is an error by default (``short_classes='error'``: a generic folder has no reference
    behaviour; ImageNet's classes hold at least 732 images).

    Args:
        split_dirs (dict): folder of each split under ``data_root`` (or under ``data_root/images`` in CoOp's
            layout); ``val=None`` when there is no validation folder. Defaults to
            ``dict(train='train', val='val', test='test')``.
        extensions (tuple[str]): image file extensions.
        **kwargs: see :class:`FewShotDataset` (``data_root``, ``split``, ``num_shots``, ``seed``,
            ``classnames``, ``templates``, ``val_mode``, ``short_classes``, ...). The class names default to
            the folder names (to ``classnames.txt`` in CoOp's layout); ``classnames`` may be a list in the order
            of the sorted folders, or a ``{folder: name}`` mapping (its folders must be exactly the class
            folders: an error lists both). Without a validation folder, the validation split is held out of
            train (seeded, disjoint from the few-shot sample).
    """

    LAYOUT = ('<data_root>/<split>/<class>/<image>, or CoOp\'s <data_root>/images/<split>/<class>/<image> with '
              '<data_root>/classnames.txt')
    #: the image folder of CoOp's ImageNet layout, and its class-name file
    COOP_IMAGE_DIR = 'images'
    CLASSNAMES_FILE = 'classnames.txt'

    def __init__(self, *args, split_dirs: Optional[Dict[str, Optional[str]]] = None,
                 extensions: Sequence[str] = IMG_EXTENSIONS, **kwargs):
        names = kwargs.get('classnames')
        self._classname_map = None
        if isinstance(names, Mapping):  # {class folder: class name}, matched by folder when the folders are read
            self._classname_map = {str(k): str(v) for k, v in names.items()}
            kwargs['classnames'] = None
        self.split_dirs = dict(train='train', val='val', test='test')
        self.split_dirs.update(split_dirs or {})
        self.extensions = tuple(e.lower() for e in extensions)
        self.image_prefix = ''  # 'images/' in CoOp's layout, set when loading
        super().__init__(*args, **kwargs)

    def _detect_layout(self) -> str:
        """The folder the split folders are in, relative to ``data_root``: '' or CoOp's 'images/'."""
        train = self.split_dirs['train']
        for prefix in ('', f'{self.COOP_IMAGE_DIR}/'):
            if osp.isdir(osp.join(self.data_root, prefix + train)):
                return prefix
        raise FileNotFoundError(
            f"neither '{osp.join(self.data_root, train)}' nor "
            f"'{osp.join(self.data_root, self.COOP_IMAGE_DIR, train)}' exists ({type(self).__name__}, split "
            f"'{self.split}'): expected the split folders in the data root '{self.data_root}', "
            f'<data_root>/{train}/<class>/<image> (e.g. ImageNet\'s train/ and val/), or CoOp\'s ImageNet layout '
            f'<data_root>/{self.COOP_IMAGE_DIR}/{train}/<wnid>/<image> with <data_root>/{self.CLASSNAMES_FILE} '
            '(set split_dirs for other folder names); see the data guide in the README')

    def _scan_split(self, split: str):
        rel_dir = self.image_prefix + self.split_dirs[split]
        folder = osp.join(self.data_root, rel_dir)
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
        return folder, classes, [(f'{rel_dir}/{rel}', label) for rel, label in items]

    def _mapped_classnames(self, classes: Sequence[str]) -> List[str]:
        """The names of ``classes`` (the class folders, in label order) from the ``{folder: name}`` mapping."""
        given, found = set(self._classname_map), set(classes)
        if given != found:
            raise ValueError(f"classnames maps the folders {sorted(given)} but the class folders of "
                             f"'{osp.join(self.data_root, self.image_prefix + self.split_dirs['train'])}' are "
                             f'{sorted(found)} (missing from the mapping: {sorted(found - given)}; not folders: '
                             f'{sorted(given - found)})')
        return [self._classname_map[c] for c in classes]

    def _coop_classnames(self, classes: Sequence[str]) -> Optional[List[str]]:
        """The names of ``classes`` from CoOp's ``classnames.txt``; None without the file.

        Args:
            classes (sequence of str): the class folder names (wnids), in label order.
        """
        path = osp.join(self.data_root, self.CLASSNAMES_FILE)
        if not osp.isfile(path):
            return None
        table = dict(read_classnames_file(path))  # CoOp's OrderedDict: a repeated wnid takes its last name
        missing = [c for c in classes if c not in table]
        if missing:
            raise ValueError(f"'{path}' names no class for the folders {missing[:5]} ({len(missing)} in all) of "
                             f"'{osp.join(self.data_root, self.image_prefix + self.split_dirs['train'])}': expected "
                             "lines '<wnid> <class name>' for every class folder")
        return [table[c] for c in classes]

    def load_splits(self):
        self.image_prefix = self._detect_layout()
        _, classes, train = self._scan_split('train')
        self._metainfo['class_folders'] = tuple(classes)
        names = None
        if self._classname_map is not None:
            names = self._mapped_classnames(classes)
        elif self.image_prefix and self._classnames_arg is None:
            names = self._coop_classnames(classes)
        splits = dict(classnames=names or list(classes), train=train, val=None, test=None)
        # the official Meta-Adapter protocol draws every split from one stream: it reads them all; the held-out
        # queries depend on whether there is a validation split
        needed = {'query': ('val', ), 'val': ('val', ), 'test': ('test', )}.get(self.split, ())
        if self.protocol != 'default':
            needed = ('val', 'test')
        for split in needed:
            if split not in ('val', 'test') or self.split_dirs[split] is None:
                continue
            if split == 'val' and not osp.isdir(osp.join(self.data_root, self.image_prefix + self.split_dirs['val'])):
                # no validation folder: the validation images are held out of train (seeded, disjoint from the
                # few-shot sample), as for ImageNet
                print_log(f"{type(self).__name__}: no validation folder "
                          f"'{osp.join(self.data_root, self.image_prefix + self.split_dirs['val'])}': the validation "
                          'split is held out of the train images', logger='current')
                continue
            folder, split_classes, items = self._scan_split(split)
            if tuple(split_classes) != tuple(classes):
                missing = sorted(set(classes) - set(split_classes))[:5]
                extra = sorted(set(split_classes) - set(classes))[:5]
                raise ValueError(f"class folders of '{folder}' differ from the train split's: "
                                 f'missing {missing}, unexpected {extra}')
            splits[split] = items
        return splits
