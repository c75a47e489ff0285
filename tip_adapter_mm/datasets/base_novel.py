"""Base/novel class splits: class indices, class names, or a published split referred to by name.

A class spec (the ``base_classes`` setting of Meta-Adapter configs, the head and the metric) is one of

- a list of class indices, e.g. ``[0, 1, 2]``;
- a list of class names, e.g. ``['windsor_chair', 'trilobite']`` (matched to the dataset's class names,
  ignoring case and ``_`` vs space);
- ``'meta_adapter/<dataset>'``: Meta-Adapter's official split of that dataset (:data:`OFFICIAL_FILE`, taken
  from the official code with its source), for ``imagenet``, ``caltech101``, ``dtd``, ``eurosat``,
  ``fgvc_aircraft``, ``oxford_pets``, ``sun397`` and ``ucf101``.

Pure Python (json); nothing imports mmengine.
"""
import functools
import json
import os.path as osp
from typing import Dict, List, Optional, Sequence, Union

OFFICIAL_FILE = osp.join(osp.dirname(osp.abspath(__file__)), 'data', 'meta_adapter_base_novel.json')
PREFIX = 'meta_adapter/'

ClassSpec = Union[None, str, Sequence[Union[int, str]]]


@functools.lru_cache(maxsize=1)
def _official() -> dict:
    with open(OFFICIAL_FILE) as f:
        return json.load(f)


def official_datasets() -> List[str]:
    """The datasets with a published Meta-Adapter split."""
    return sorted(_official()['datasets'])


def official_split(dataset: str) -> Dict[str, list]:
    """Meta-Adapter's published split of ``dataset``: ``{'kind', 'base', 'novel'}`` (a copy).

    Raises:
        KeyError: for a dataset without a published split (the message lists those with one).
    """
    table = _official()['datasets']
    if dataset not in table:
        raise KeyError(f"no published Meta-Adapter base/novel split for '{dataset}'; published: "
                       f'{official_datasets()} (for other datasets give class indices or names, or rank the '
                       'classes with tools/rank_classes.py)')
    entry = table[dataset]
    return {'kind': entry['kind'], 'base': list(entry['base']), 'novel': list(entry['novel'])}


def _norm(name: str) -> str:
    return ' '.join(str(name).replace('_', ' ').lower().split())


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def spec_values(spec: ClassSpec) -> Optional[list]:
    """The indices or names a spec stands for, before matching names (None for None).

    Raises:
        ValueError: for a malformed spec (the message says what is accepted).
    """
    if spec is None:
        return None
    if isinstance(spec, str):
        if not spec.startswith(PREFIX):
            raise ValueError(f"a class spec string must be '{PREFIX}<dataset>' (published: {official_datasets()}), "
                             f'got {spec!r}')
        return official_split(spec[len(PREFIX):])['base']
    values = list(spec)
    if not values:
        raise ValueError('a class spec must not be empty')
    if all(_is_int(v) for v in values):
        kind = 'index'
    elif all(isinstance(v, str) for v in values):
        kind = 'name'
    else:
        raise ValueError(f'a class spec is a list of class indices or of class names, not a mix: {values[:5]}...')
    keys = values if kind == 'index' else [_norm(v) for v in values]
    if len(set(keys)) != len(keys):
        raise ValueError(f'a class spec lists some classes twice: {values}')
    return values


def needs_names(spec: ClassSpec) -> bool:
    """Whether resolving ``spec`` needs the dataset's class names (a spec of names)."""
    values = spec_values(spec)
    return values is not None and not all(_is_int(v) for v in values)


def resolve_classes(spec: ClassSpec, num_classes: Optional[int] = None,
                    classnames: Optional[Sequence[str]] = None, what: str = 'base_classes') -> Optional[List[int]]:
    """The class indices of ``spec`` (None for None).

    Args:
        spec: a class spec (see the module docstring).
        num_classes (int, optional): the class count, to check indices.
        classnames (sequence of str, optional): the dataset's class names, in label order (required for a spec
            of names).
        what (str): the setting's name, for messages.

    Raises:
        ValueError: naming ``what``, for indices out of range or names the dataset does not have.
    """
    values = spec_values(spec)
    if values is None:
        return None
    if all(_is_int(v) for v in values):
        bad = [v for v in values if v < 0 or (num_classes is not None and v >= num_classes)]
        if bad:
            raise ValueError(f'{what}: class indices {bad[:10]} are outside [0, {num_classes})')
        return [int(v) for v in values]
    if classnames is None:
        raise ValueError(f'{what} names classes ({values[:3]}...); resolving them needs the dataset\'s class names')
    index: Dict[str, int] = {}
    for i, name in enumerate(classnames):
        index.setdefault(_norm(name), i)
    missing = [v for v in values if _norm(v) not in index]
    if missing:
        raise ValueError(f'{what}: {len(missing)} of {len(values)} classes are not classes of the dataset, e.g. '
                         f'{missing[:5]} (the dataset has {len(classnames)} classes, e.g. {list(classnames)[:5]})')
    return [index[_norm(v)] for v in values]
