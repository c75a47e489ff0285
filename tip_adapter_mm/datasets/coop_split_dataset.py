import functools
import json
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple, Union

from mmpretrain.registry import DATASETS

from .dataset_settings import COOP_DATASETS, coop_dataset_settings
from .few_shot_dataset import FewShotDataset

SPLIT_KEYS = ('train', 'val', 'test')


@functools.lru_cache(maxsize=8)
def _read_split_json(path: str, mtime: float, size: int) -> Dict[str, Optional[tuple]]:
    """The (image path, label, class name) entries of each split of a CoOp split file; cached by
    (path, mtime, size), so the train/val/test datasets of one run parse a large file (Food-101) once."""
    try:
        with open(path) as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"CoOp split file '{path}' is not valid JSON ({e})") from e
    if not isinstance(data, dict) or 'train' not in data or 'test' not in data:
        raise ValueError(f"CoOp split file '{path}' must be a JSON object with the keys 'train', 'val' and "
                         "'test' (lists of [image path, label, class name])")
    out = {}
    for key in SPLIT_KEYS:
        entries = data.get(key)
        if entries is None:
            out[key] = None
            continue
        parsed = []
        for i, entry in enumerate(entries):
            try:
                impath, label, classname = entry[0], int(entry[1]), (str(entry[2]) if len(entry) > 2 else None)
                if not isinstance(impath, str) or label < 0:
                    raise ValueError
            except (TypeError, ValueError, IndexError):
                raise ValueError(f"CoOp split file '{path}': entry {i} of '{key}' is {entry!r}, expected "
                                 '[image path, label >= 0, class name]') from None
            parsed.append((impath, label, classname))
        out[key] = tuple(parsed)
    return out


def read_coop_split(path: str) -> Dict[str, Optional[tuple]]:
    """Read a CoOp ``split_zhou_<Name>.json``: ``{split: ((impath, label, classname), ...) or None}``."""
    st = os.stat(path)
    return _read_split_json(osp.abspath(path), st.st_mtime, st.st_size)


def _classnames(entries: Dict[str, Optional[tuple]], path: str) -> List[str]:
    """Class names ordered by label, as Dassl's ``DatasetBase.get_lab2cname``."""
    names: Dict[int, str] = {}
    for key in SPLIT_KEYS:
        for impath, label, classname in entries[key] or ():
            if classname is None:
                continue
            if names.setdefault(label, classname) != classname:
                raise ValueError(f"CoOp split file '{path}': label {label} is named both '{names[label]}' and "
                                 f"'{classname}' (at '{impath}' in '{key}')")
    labels = sorted({label for key in SPLIT_KEYS for _, label, _ in entries[key] or ()})
    missing = sorted(set(range(labels[-1] + 1 if labels else 0)) - set(names))
    if missing:
        raise ValueError(f"CoOp split file '{path}' gives no class name for the labels {missing[:10]}: labels "
                         'must be 0..N-1, each with a name')
    return [names[label] for label in range(len(names))]


@DATASETS.register_module()
class CoOpSplitDataset(FewShotDataset):
    """A dataset split by one of CoOp's ``split_zhou_<Name>.json`` files (Caltech101, OxfordPets,
    StanfordCars, Flowers102, Food101, SUN397, DTD, EuroSAT, UCF101), read as Dassl's
    ``OxfordPets.read_split`` does.

    The file is ``{"train": [[impath, label, classname], ...], "val": [...], "test": [...]}`` with image
    paths relative to ``<data_root>/<image_dir>``. Items keep the file's order, so the few-shot sample of a
    seed is the one Dassl's ``generate_fewshot_dataset`` draws from the same list (classes in order of first
    appearance in train). The class names are the file's third field, ordered by label (Dassl's
    ``get_lab2cname``); CoOp's files already hold the readable names (e.g. EuroSAT "Annual Crop Land").
    The validation split is the file's ``val``: whole by default (Tip-Adapter), or ``val_mode='fewshot'`` for
    min(K, 4) images per class drawn after the train sample from the same seeded stream, which is CoOp's list.
    A class with fewer than K images keeps all of them by default (``short_classes='keep_all'``, Dassl's
    ``repeat=False`` as CoOp calls it); ``'replace'`` samples with replacement as Tip-Adapter's reader does.

    With ``dataset=<name>`` (a key of :data:`~tip_adapter_mm.datasets.dataset_settings.COOP_DATASETS`,
    e.g. ``'oxford_pets'``) the image folder, the split file name and the prompt templates come from the
    CoOp layout table; explicit arguments override them. ``data_root`` is then optional
    (default ``data/<folder>``, e.g. ``data/oxford_pets``), and may also be CoOp's ``$DATA`` root that holds
    ``<folder>/`` (used when ``<data_root>/<split file>`` does not exist but
    ``<data_root>/<folder>/<split file>`` does).

    Args:
        data_root (str, optional): the dataset folder, e.g. ``data/oxford_pets``; it holds the split file
            and the image folder. Required without ``dataset``.
        split_file_name (str, optional): the CoOp split file in ``data_root``, e.g.
            ``'split_zhou_OxfordPets.json'``.
        image_dir (str, optional): the folder under ``data_root`` the file's image paths are relative to,
            e.g. ``'images'``; ``''`` for the dataset folder itself (Stanford Cars).
        dataset (str, optional): a preset name: caltech101, oxford_pets, stanford_cars, oxford_flowers,
            food101, sun397, dtd, eurosat or ucf101.
        templates (str | list[str], optional): prompt templates; default: the preset's, else
            ``['a photo of a {}.']``.
        **kwargs: see :class:`FewShotDataset` (``split``, ``num_shots``, ``seed``, ``classnames``,
            ``val_mode``, ``val_shots``, ``short_classes`` (default ``'keep_all'``), ``split_file``,
            ``skip_unreadable``, ``pipeline``, ...).
    """

    LAYOUT = '<data_root>/<split_file_name> and <data_root>/<image_dir>/<image paths of the split file>'
    DEFAULT_SHORT_CLASSES = 'keep_all'  # Dassl's generate_fewshot_dataset(repeat=False), as CoOp calls it

    def __init__(self,
                 data_root: Optional[str] = None,
                 split_file_name: Optional[str] = None,
                 image_dir: Optional[str] = None,
                 dataset: Optional[str] = None,
                 templates: Union[str, Sequence[str], None] = None,
                 **kwargs):
        preset = {}
        presets = sorted(k for k, v in COOP_DATASETS.items() if v['type'] == 'CoOpSplitDataset')
        if dataset is not None:
            preset = coop_dataset_settings(dataset)
            if preset['type'] != 'CoOpSplitDataset':
                raise ValueError(f"dataset '{dataset}' is not read by {type(self).__name__} (it has no CoOp split "
                                 f"file); use type='{preset['type']}'. Presets of {type(self).__name__}: {presets}")
        self.dataset_name = dataset
        self.split_file_name = split_file_name if split_file_name is not None else preset.get('split_file')
        self.image_dir = image_dir if image_dir is not None else preset.get('image_dir')
        if self.split_file_name is None or self.image_dir is None:
            raise ValueError(f'{type(self).__name__} needs split_file_name and image_dir, or dataset=<name> with '
                             f'a name of {presets}')
        self.image_dir = self.image_dir.strip('/')
        if data_root is None:
            if not preset:
                raise ValueError(f'{type(self).__name__} needs data_root (the dataset folder)')
            data_root = osp.join('data', preset['folder'])
        elif preset and not osp.isfile(osp.join(data_root, self.split_file_name)) and osp.isfile(
                osp.join(data_root, preset['folder'], self.split_file_name)):
            data_root = osp.join(data_root, preset['folder'])  # CoOp's $DATA root
        if preset:
            self.LAYOUT = (f"<data_root>/{self.split_file_name} and <data_root>/{self.image_dir or '<image paths>'}"
                           f"{'/...' if self.image_dir else ''} (CoOp layout: data/{preset['folder']}/)")
        if templates is None:
            templates = preset.get('templates', ('a photo of a {}.', ))
        super().__init__(data_root=data_root, templates=templates, **kwargs)

    @property
    def split_path(self) -> str:
        """The CoOp split file."""
        return osp.join(self.data_root, self.split_file_name)

    def _missing(self, what: str, path: str) -> FileNotFoundError:
        name = f" for dataset '{self.dataset_name}'" if self.dataset_name else ''
        return FileNotFoundError(
            f"{what} '{path}' does not exist{name} ({type(self).__name__}, split '{self.split}'); expected "
            f'{self.LAYOUT}. The split_zhou_*.json files are linked from CoOp\'s DATASETS.md; see the data guide '
            'in the README')

    def load_splits(self):
        path = self.split_path
        if not osp.isfile(path):
            raise self._missing('CoOp split file', path)
        image_root = osp.join(self.data_root, self.image_dir) if self.image_dir else self.data_root
        if not osp.isdir(image_root):
            raise self._missing('image folder', image_root)
        entries = read_coop_split(path)
        classnames = _classnames(entries, path)
        prefix = f'{self.image_dir}/' if self.image_dir else ''

        def items(key) -> Optional[List[Tuple[str, int]]]:
            if entries[key] is None:
                return None
            return [(prefix + impath, label) for impath, label, _ in entries[key]]

        return dict(classnames=classnames, num_classes=len(classnames), train=items('train'), val=items('val'),
                    test=items('test'))
