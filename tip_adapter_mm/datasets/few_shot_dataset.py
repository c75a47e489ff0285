import json
import os.path as osp
import random
from functools import partial
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from mmengine.dataset import BaseDataset
from mmengine.logging import print_log

from .base_novel import resolve_classes
from ..protocol import DATA_PROTOCOLS
from .fewshot import check_short_classes, draw_few_shot, meta_adapter_official_draws, official_support_shots
from .metadata import resolve_classnames, resolve_templates

Item = Tuple[str, int]  # (image path relative to data_root, label)
VAL_MODES = ('full', 'fewshot', 'holdout')
#: the splits of a few-shot dataset
SPLITS = ('train', 'val', 'test', 'query')


class FewShotDataset(BaseDataset):
    """Base of the project's datasets: train/val/test splits with seeded K-shot sampling of train.

    A subclass reads its on-disk layout in :meth:`load_splits`; this class turns the splits into the
    requested one, with the reader flow of CoOp's datasets (``random.seed(seed)`` once, then Dassl's
    ``generate_fewshot_dataset`` on train, then on val, from that one stream; here on a private
    ``random.Random(seed)``, never the global generator):

    - ``train``: ``num_shots`` images per class, sampled with the Dassl algorithm
      (:func:`~tip_adapter_mm.datasets.fewshot.draw_few_shot`), or read back from a ``split_file``;
    - ``val``: ``val_mode='full'`` the whole validation split (Tip-Adapter's protocol), ``'fewshot'``
      ``val_shots`` (default min(K, 4)) images per class of it, drawn from the same stream right after the
      train sample, so that the list is CoOp's (``shot_K-seed_S.pkl``'s ``val``); ``'holdout'`` the same
      number held out of the train images outside the K-shot sample (the project's protocol for datasets
      without a validation split, such as ImageNet; drawn with its own seed ``f'val-{seed}'``);
    - ``test``: the whole test split;
    - ``query``: Meta-Adapter's meta-training queries, images of the ``base_classes``: by default the base-class
      images of the K-shot train sample (the supports themselves); with ``query_shots=Q``, Q images per base
      class of train held out of the K-shot sample (and of a held-out validation split), drawn with their own
      seed ``f'query-{seed}'``, so that the adapter is meta-trained on queries that are not its supports.

    ``protocol='meta_adapter_official'`` gives Meta-Adapter's official data protocol instead
    (:func:`~tip_adapter_mm.datasets.fewshot.meta_adapter_official_draws`, one ``random.Random(seed)`` stream
    in the official order): ``query`` = the official ``train`` (K per base class of train; all classes for
    OxfordPets and EuroSAT), ``train`` (the cache supports) = the official ``full`` (K per class of the
    **validation** split; of train for ImageNet), ``test`` = the official evaluated set (K per novel class of
    the **test** split with replacement; all novel test images for ImageNet); ``val`` is empty (the official
    code selects on test: use it with ``hp_selection='legacy_test'``).

    A class with fewer than K images (K = ``num_shots``, or the validation count) is handled as
    ``short_classes`` says: ``'keep_all'`` keeps all its images (Dassl's default, so CoOp's), ``'replace'``
    samples K with replacement (Tip-Adapter's copy of the reader), ``'error'`` stops with the class named.
    The default is the reference behaviour of the dataset family (:attr:`DEFAULT_SHORT_CLASSES`:
    ``'keep_all'`` for the CoOp datasets, ``'error'`` for a generic image folder). Short classes are logged
    and listed in ``metainfo['short_classes']`` (label -> images available). A cache with short classes
    under ``'keep_all'`` holds fewer than C x K entries, which the Tip-Adapter head accepts but Meta-Adapter
    (exactly K supports per class) does not.

    Args:
        data_root (str): dataset root.
        split (str): 'train', 'val' or 'test'.
        num_shots (int, optional): images per class in the train split; None keeps every image.
        seed (int): few-shot sampling seed. Defaults to 1.
        classnames (str | list[str], optional): prompt names of the classes in label order, or a built-in
            list name; defaults to the names the layout provides.
        templates (str | list[str]): prompt templates, or a built-in list name.
        val_mode (str, optional): 'full', 'fewshot' or 'holdout'; defaults to 'full' when the layout has a
            validation split and 'holdout' otherwise.
        val_shots (int, optional): images per class of a few-shot or held-out validation split.
        short_classes (str, optional): 'error', 'keep_all' or 'replace' for classes with fewer than K
            images; defaults to the class's :attr:`DEFAULT_SHORT_CLASSES`.
        allow_replacement (bool, optional): deprecated alias: True is ``short_classes='replace'``, False is
            ``short_classes='error'``.
        split_file (str, optional): a sampled list written by an earlier run (``fewshot_split.json``, or one
            converted from CoOp's pickles): its train (and val) lists are used instead of sampling. A file
            without a val list gives a ``'fewshot'`` val drawn after the seed's own train sample.
        protocol (str): 'default' (the project's protocol) or 'meta_adapter_official' (see above).
        base_classes (optional): the base classes (a class spec of :mod:`~tip_adapter_mm.datasets.base_novel`),
            required by the ``query`` split and by the official Meta-Adapter protocol.
        query_shots (int, optional): held-out queries per base class of the ``query`` split (default: the
            base-class images of the K-shot sample).
        skip_unreadable (bool): check every image of the split when loading and leave out the unreadable
            ones (counted in ``metainfo['skipped_images']``); by default an unreadable image is an error
            that names the file when it is read.
        **kwargs: passed to :class:`mmengine.dataset.BaseDataset` (``pipeline``, ...).
    """

    #: the expected on-disk layout, for error messages
    LAYOUT = ''
    #: the default ``short_classes`` of the dataset family
    DEFAULT_SHORT_CLASSES = 'error'

    def __init__(self,
                 data_root: str,
                 split: str = 'train',
                 num_shots: Optional[int] = None,
                 seed: int = 1,
                 classnames: Union[str, Sequence[str], None] = None,
                 templates: Union[str, Sequence[str]] = ('a photo of a {}.', ),
                 val_mode: Optional[str] = None,
                 val_shots: Optional[int] = None,
                 short_classes: Optional[str] = None,
                 allow_replacement: Optional[bool] = None,
                 split_file: Optional[str] = None,
                 protocol: str = 'default',
                 base_classes=None,
                 query_shots: Optional[int] = None,
                 skip_unreadable: bool = False,
                 **kwargs):
        if split not in SPLITS:
            raise ValueError(f'split must be one of {SPLITS}, got {split!r}')
        if protocol not in DATA_PROTOCOLS:
            raise ValueError(f'protocol (the data_protocol setting) must be one of {DATA_PROTOCOLS}, got {protocol!r}')
        if query_shots is not None and (not isinstance(query_shots, int) or isinstance(query_shots, bool)
                                        or query_shots < 1):
            raise ValueError(f'query_shots must be None or an integer >= 1, got {query_shots!r}')
        if protocol != 'default' and num_shots is None:
            raise ValueError(f'protocol={protocol!r} samples K images per class: num_shots must be given')
        if val_mode is not None and val_mode not in VAL_MODES:
            raise ValueError(f'val_mode must be one of {VAL_MODES}, got {val_mode!r}')
        if allow_replacement is not None:
            alias = 'replace' if allow_replacement else 'error'
            if short_classes not in (None, alias):
                raise ValueError(f'allow_replacement={allow_replacement} (deprecated: short_classes={alias!r}) '
                                 f'contradicts short_classes={short_classes!r}; give short_classes only')
            short_classes = alias
        self.split = split
        self.num_shots = num_shots
        self.seed = seed
        self.val_mode = val_mode
        self.val_shots = val_shots
        self.short_classes = check_short_classes(short_classes if short_classes is not None else
                                                 self.DEFAULT_SHORT_CLASSES)
        self.split_file = split_file
        self.protocol = protocol
        self.base_classes = base_classes
        self.query_shots = query_shots
        self.skip_unreadable = skip_unreadable
        self._classnames_arg = classnames
        metainfo = dict(templates=tuple(resolve_templates(templates)))
        if classnames is not None:
            metainfo['classes'] = tuple(resolve_classnames(classnames))
        kwargs.setdefault('test_mode', True)  # a failing image is an error, never silently replaced
        super().__init__(data_root=data_root, metainfo=metainfo, **kwargs)

    # -- to implement --------------------------------------------------------------------------------
    def load_splits(self) -> Dict[str, object]:
        """Read the layout: ``dict(classnames=[...] or None, train=[items], val=[items] or None,
        test=[items])`` with items ``(path relative to data_root, label)``."""
        raise NotImplementedError

    # -- sampling ------------------------------------------------------------------------------------
    def _check_root(self):
        if osp.exists(self.data_root) and not osp.isdir(self.data_root):
            raise NotADirectoryError(f"data root '{self.data_root}' ({type(self).__name__}, split '{self.split}') is "
                                     f'a file; expected a folder: {self.LAYOUT or "see the README data guide"}')
        if not osp.isdir(self.data_root):
            raise FileNotFoundError(
                f"data root '{self.data_root}' does not exist ({type(self).__name__}, split '{self.split}'); "
                f'expected {self.LAYOUT or "the layout of the README data guide"}; see the data guide in the '
                'README')

    def _draw(self, rng: random.Random, items: List[Item], k: int, names: List[str], source: str,
              exclude=None, log: bool = True) -> List[Item]:
        """``k`` items per class drawn from ``rng`` (:func:`~tip_adapter_mm.datasets.fewshot.draw_few_shot`).

        Args:
            rng (random.Random): the stream, advanced by the draw.
            items (list): (path, label) items to draw from.
            k (int): items per class.
            names (list[str]): class names, for the messages.
            source (str): where the items come from, for the messages.
            exclude (set, optional): item indices that must not be drawn.
            log (bool): log the short classes and list them in ``metainfo['short_classes']`` (False for a
                draw that only advances the stream).
        """
        drawn = draw_few_shot(rng, [label for _, label in items], k, self.short_classes, exclude=exclude,
                              classnames=names, source=source)
        if log:
            self._record_short(drawn.short, k, names, source, self.short_classes,
                               f'short_classes={self.short_classes!r}')
        return [items[i] for i in drawn.indices]

    def _record_short(self, short: Dict[int, int], k: int, names: List[str], source: str, policy: str, why: str):
        """List the short classes of this split's draw in ``metainfo['short_classes']`` and log them.

        Args:
            short (dict): label -> images available, of the classes with fewer than ``k``.
            k (int): images per class drawn.
            names (list[str]): class names, for the message.
            source (str): where the images come from, for the message.
            policy (str): what was done with them, 'keep_all' or 'replace'.
            why (str): what set the policy, for the message.
        """
        self._metainfo['short_classes'] = dict(short)
        if not short:
            return
        kept = 'kept all their images' if policy == 'keep_all' else f'sampled {k} images with replacement'
        listed = ', '.join(f"'{names[label]}' ({n})" if label < len(names) else f'label {label} ({n})'
                           for label, n in list(short.items())[:20])
        more = f' and {len(short) - 20} more' if len(short) > 20 else ''
        print_log(f'{type(self).__name__} {self.split} split: {len(short)} classes of {source} have fewer than {k} '
                  f'images; {kept} ({why}): {listed}{more}', logger='current')

    def _from_split_file(self, key: str) -> Optional[List[Item]]:
        if self.split_file is None:
            return None
        if not osp.isfile(self.split_file):
            raise FileNotFoundError(f"split file '{self.split_file}' does not exist")
        try:
            with open(self.split_file) as f:
                data = json.load(f)
        except (OSError, ValueError) as e:
            raise ValueError(f"split file '{self.split_file}' is not a readable JSON file ({e})") from None
        if not isinstance(data, dict):
            raise ValueError(f"split file '{self.split_file}' holds a {type(data).__name__}; expected the object "
                             "of a fewshot_split.json ({'train': [[path, label], ...], ...})")
        if key not in data:
            return None
        try:
            items = [(str(p), int(label)) for p, label in data[key]]
        except (TypeError, ValueError):
            raise ValueError(f"split file '{self.split_file}': '{key}' must be a list of [path, label] pairs") \
                from None
        num_classes = len(self.metainfo.get('classes') or ())
        bad = sorted({label for _, label in items if not 0 <= label < num_classes}) if num_classes else []
        if bad:
            raise ValueError(f"split file '{self.split_file}': '{key}' has labels {bad[:10]} outside [0, "
                             f'{num_classes}): it was made for another dataset')
        if self.num_shots is not None and key == 'train' and data.get('num_shots') not in (None, self.num_shots):
            raise ValueError(f"split file '{self.split_file}' holds a {data.get('num_shots')}-shot list but "
                             f'num_shots is {self.num_shots}')
        return items

    def _base(self, names: List[str]) -> set:
        if self.base_classes is None:
            raise ValueError(f"the {self.split!r} split of {type(self).__name__} (protocol={self.protocol!r}) needs "
                             'base_classes (the base_classes setting of a Meta-Adapter config)')
        return set(resolve_classes(self.base_classes, len(names), names))

    def _select(self, splits: Dict[str, object], names: List[str]) -> List[Item]:
        if self.protocol == 'meta_adapter_official':
            return self._select_official(splits, names)
        if self.split == 'test':
            return splits['test']
        train = splits['train']
        source = f"the train split of '{self.data_root}'"
        rng = random.Random(self.seed)  # CoOp: random.seed(seed), then the train sample, then the val sample

        def train_sample(log: bool) -> List[Item]:
            if self.num_shots is None:
                return train
            return self._draw(rng, train, self.num_shots, names, source, log=log)

        given = self._from_split_file('train')
        if self.split == 'train':
            return given if given is not None else train_sample(log=True)
        if self.split == 'query':
            return self._queries(splits, names, given if given is not None else train_sample(log=False))
        given_val = self._from_split_file('val')
        if given_val is not None:
            return given_val
        mode = self._val_mode(splits)
        if mode == 'full':
            return splits['val']
        if mode == 'holdout':
            return self._holdout_val(train, given if given is not None else train_sample(log=False), names)
        train_sample(log=False)  # advances the stream as CoOp's train sample does
        return self._draw(rng, splits['val'], self._val_shots(), names,
                          f"the validation split of '{self.data_root}'")

    def _val_mode(self, splits) -> str:
        # without a validation split (ImageNet) every mode holds the validation images out of train
        return (self.val_mode if splits.get('val') is not None else 'holdout') or 'full'

    def _val_shots(self) -> int:
        return self.val_shots if self.val_shots is not None else min(self.num_shots or 4, 4)

    def _holdout_val(self, train: List[Item], sampled: List[Item], names: List[str], log: bool = True) -> List[Item]:
        index = {item: i for i, item in enumerate(train)}
        exclude = {index[item] for item in sampled if item in index}
        return self._draw(random.Random(f'val-{self.seed}'), train, self._val_shots(), names,
                          f"the train split of '{self.data_root}' outside the few-shot sample", exclude=exclude,
                          log=log)

    def _queries(self, splits, names: List[str], sampled: List[Item]) -> List[Item]:
        """Meta-Adapter's queries: the base-class items of the K-shot sample, or ``query_shots`` per base class
        held out of it (and of a held-out validation split)."""
        base = self._base(names)
        if self.query_shots is None:
            return [item for item in sampled if item[1] in base]
        train = splits['train']
        taken = set(sampled)
        if self._val_mode(splits) == 'holdout' and self._from_split_file('val') is None:
            taken |= set(self._holdout_val(train, sampled, names, log=False))
        pool = [item for item in train if item[1] in base and item not in taken]
        return self._draw(random.Random(f'query-{self.seed}'), pool, self.query_shots, names,
                          f"the base classes of the train split of '{self.data_root}' outside the few-shot sample")

    def _select_official(self, splits: Dict[str, object], names: List[str]) -> List[Item]:
        """The split under Meta-Adapter's official data protocol (see the class docstring)."""
        if self.split == 'val':
            return []  # the official code has no validation split: it selects on test
        given = self._from_split_file(self.split)
        if given is not None:
            return given
        labels = {key: None if splits.get(key) is None else [label for _, label in splits[key]]
                  for key in ('train', 'val', 'test')}
        if labels['test'] is None and self.split == 'test':
            raise ValueError(f"'{self.data_root}' has no test split")
        dataset = getattr(self, 'dataset_name', None)  # the official readers' quirks are per dataset
        draws = meta_adapter_official_draws(labels, sorted(self._base(names)), self.num_shots, self.seed, dataset,
                                            names)
        source, drawn = draws[{'query': 'query', 'train': 'support', 'test': 'test'}[self.split]]
        k = official_support_shots(dataset, self.num_shots) if self.split == 'train' else self.num_shots
        self._record_short(drawn.short, k, names, f'the {source} split', 'replace',
                           f'protocol {self.protocol!r}, as the official reader does')
        return [splits[source][i] for i in drawn.indices]

    # -- BaseDataset API -----------------------------------------------------------------------------
    def load_data_list(self) -> List[dict]:
        self._check_root()
        splits = self.load_splits()
        names = list(self._metainfo.get('classes') or splits.get('classnames') or ())
        num_classes = splits.get('num_classes') or len(splits.get('classnames') or names)
        if len(names) != num_classes:
            raise ValueError(f"'{self.data_root}' has {num_classes} classes but {len(names)} class names were "
                             f'given (classnames={self._classnames_arg!r})')
        self._metainfo['classes'] = tuple(names)
        self._metainfo['short_classes'] = {}
        items = self._select(splits, names)
        skipped = []
        if self.skip_unreadable:
            readable = []
            for item in items:
                (readable if image_ok(osp.join(self.data_root, item[0])) else skipped).append(item)
            items = readable
        self._metainfo['skipped_images'] = [p for p, _ in skipped]
        return [dict(img_path=osp.join(self.data_root, rel), gt_label=label) for rel, label in items]

    def prepare_data(self, idx):
        try:
            return super().prepare_data(idx)
        except Exception as e:
            raise RuntimeError(f"cannot read image '{self.get_data_info(idx)['img_path']}' "
                               f'({type(e).__name__}: {e}); set skip_unreadable=True in the dataset config to '
                               'leave unreadable images out') from e

    def _serialize_data(self):
        if not self.data_list:  # e.g. the train split of zero-shot CLIP (num_shots=0)
            return np.zeros(0, dtype=np.uint8), np.zeros(0, dtype=np.int64)
        return super()._serialize_data()

    def split_items(self) -> List[Item]:
        """(path relative to ``data_root``, label) of every item, in dataset order."""
        return [(osp.relpath(self.get_data_info(i)['img_path'], self.data_root),
                 int(self.get_data_info(i)['gt_label'])) for i in range(len(self))]


def check_readable(dataset, workers: int = 8) -> None:
    """Raise a ``RuntimeError`` naming the images of ``dataset`` that cannot be opened (a cheap check, without
    decoding: the file's header and, for PNG, its chunk checksums), so that a bad image stops a run before
    any work instead of after the cache, the search and the checkpoint."""
    from concurrent.futures import ThreadPoolExecutor
    paths = [dataset.get_data_info(i)['img_path'] for i in range(len(dataset))]
    with ThreadPoolExecutor(workers) as pool:
        bad = [p for p, ok in zip(paths, pool.map(partial(image_ok, decode=False), paths)) if not ok]
    if bad:
        more = f' (and {len(bad) - 1} more)' if len(bad) > 1 else ''
        raise RuntimeError(f"cannot read image '{bad[0]}'{more} of the {getattr(dataset, 'split', '?')} split: "
                           'the file is missing, truncated or not an image; replace it, or set '
                           'skip_unreadable=True in the dataset config to leave such images out (counted in '
                           'results.json)')


def image_ok(path: str, decode: bool = True) -> bool:
    """Whether PIL can read the image at ``path``: decode it, or (``decode=False``, cheap) check its header
    and, for PNG, its chunk checksums."""
    from PIL import Image
    try:
        with Image.open(path) as img:
            img.load() if decode else img.verify()
        return True
    except Exception:  # noqa: BLE001
        return False
