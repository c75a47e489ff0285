import os.path as osp
from typing import List, Sequence, Union

from mmpretrain.registry import DATASETS

from .few_shot_dataset import FewShotDataset

FGVC_TEMPLATES = ('a photo of a {}, a type of aircraft.', )


@DATASETS.register_module()
class FewShotFGVCAircraft(FewShotDataset):
    """FGVC-Aircraft (variant level, 100 classes) with its official train/val/test split, read as CoOp and
    Tip-Adapter read it (Dassl's ``FGVCAircraft``).

    Registered as ``type='FewShotFGVCAircraft'``: mmpretrain registers its own ``FGVCAircraft`` (another layout
    and arguments) in the same registry. ``FGVCAircraft`` is a Python alias of this class.

    Layout (CoOp ``DATASETS.md``: the ``data/`` folder of ``fgvc-aircraft-2013b.tar.gz`` renamed to
    ``fgvc_aircraft``)::

        <data_root>/variants.txt                       # the class names in label order, one per line
        <data_root>/images_variant_train.txt           # lines '<image id> <variant name>'
        <data_root>/images_variant_val.txt             #   (variant names may contain spaces)
        <data_root>/images_variant_test.txt
        <data_root>/images/<image id>.jpg

    Items keep the order of the split files (the few-shot sample of a seed is Dassl's). The validation split
    is ``images_variant_val.txt``: whole by default (Tip-Adapter), or ``val_mode='fewshot'`` (CoOp's list:
    drawn after the train sample from the same seeded stream). A class with fewer than K images keeps all of
    them by default (``short_classes='keep_all'``, as CoOp).

    Args:
        data_root (str): the dataset folder, e.g. ``data/fgvc_aircraft``.
        templates (str | list[str]): prompt templates. Defaults to the official
            ``['a photo of a {}, a type of aircraft.']``.
        **kwargs: see :class:`FewShotDataset` (``split``, ``num_shots``, ``seed``, ``classnames``,
            ``val_mode``, ``val_shots``, ``short_classes`` (default ``'keep_all'``), ``split_file``,
            ``skip_unreadable``, ``pipeline``, ...). The class names default to ``variants.txt``.
    """

    LAYOUT = ('<data_root>/variants.txt, <data_root>/images_variant_{train,val,test}.txt and '
              '<data_root>/images/<id>.jpg (CoOp layout: data/fgvc_aircraft/)')
    IMAGE_DIR = 'images'
    DEFAULT_SHORT_CLASSES = 'keep_all'  # Dassl's generate_fewshot_dataset(repeat=False), as CoOp calls it

    def __init__(self, data_root: str, templates: Union[str, Sequence[str]] = FGVC_TEMPLATES, **kwargs):
        super().__init__(data_root=data_root, templates=templates, **kwargs)

    def _file(self, name: str) -> str:
        path = osp.join(self.data_root, name)
        if not osp.exists(path):
            raise FileNotFoundError(
                f"'{path}' does not exist ({type(self).__name__}, split '{self.split}'); expected {self.LAYOUT}; "
                'see the data guide in the README')
        return path

    def _read_split(self, split: str, label_of: dict) -> List[tuple]:
        path = self._file(f'images_variant_{split}.txt')
        items = []
        with open(path) as f:
            for lineno, line in enumerate(f, 1):
                parts = line.strip().split(' ')
                if parts == ['']:
                    continue
                name = ' '.join(parts[1:])
                if name not in label_of:
                    raise ValueError(f"'{path}' line {lineno}: variant '{name}' of image '{parts[0]}' is not in "
                                     f"'{osp.join(self.data_root, 'variants.txt')}'")
                items.append((f'{self.IMAGE_DIR}/{parts[0]}.jpg', label_of[name]))
        return items

    def load_splits(self):
        with open(self._file('variants.txt')) as f:
            classnames = [line.strip() for line in f if line.strip()]
        label_of = {name: i for i, name in enumerate(classnames)}
        if len(label_of) != len(classnames):
            raise ValueError(f"'{osp.join(self.data_root, 'variants.txt')}' lists a variant twice")
        self._file(self.IMAGE_DIR)
        return dict(classnames=classnames, num_classes=len(classnames),
                    **{split: self._read_split(split, label_of) for split in ('train', 'val', 'test')})


FGVCAircraft = FewShotFGVCAircraft  # Python alias; the registry name is 'FewShotFGVCAircraft'
