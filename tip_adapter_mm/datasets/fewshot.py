"""Few-shot sampling, compatible with Dassl/CoOp's ``generate_fewshot_dataset`` (pure Python)."""
import random
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

#: what to do with a class that has fewer than K images (:func:`draw_few_shot`)
SHORT_CLASSES = ('error', 'keep_all', 'replace')


def group_by_label(labels: Sequence[int]) -> Dict[int, List[int]]:
    """Item indices per label, labels in order of first appearance (a dict keeps insertion order)."""
    groups: Dict[int, List[int]] = {}
    for idx, label in enumerate(labels):
        groups.setdefault(int(label), []).append(idx)
    return groups


def check_short_classes(short_classes: str) -> str:
    """``short_classes`` if it is one of :data:`SHORT_CLASSES`, else a ``ValueError``.

    Args:
        short_classes (str): the policy to check.
    """
    if short_classes not in SHORT_CLASSES:
        raise ValueError(f'short_classes must be one of {SHORT_CLASSES}, got {short_classes!r}')
    return short_classes


class FewShotDraw(NamedTuple):
    """The result of :func:`draw_few_shot`.

    Args:
        indices (list[int]): the drawn item indices, grouped by class in order of first appearance.
        short (dict[int, int]): label -> number of usable items of every class that had fewer than K.
    """

    indices: List[int]
    short: Dict[int, int]


def draw_few_shot(rng: random.Random, labels: Sequence[int], num_shots: int, short_classes: str = 'error',
                  exclude: Optional[set] = None, classnames: Optional[Sequence[str]] = None,
                  source: str = 'the dataset') -> FewShotDraw:
    """One call of Dassl's ``generate_fewshot_dataset``, drawn from the generator ``rng`` (advanced in place).

    Classes in order of first appearance; ``rng.sample(items, K)`` per class with at least K items. A class
    with fewer ("short") follows ``short_classes``:

    - ``'keep_all'``: keep every item, in list order, drawing nothing (Dassl's default ``repeat=False``,
      hence CoOp's);
    - ``'replace'``: ``rng.choices(items, k=K)``, with replacement (Dassl's ``repeat=True``, the default of
      Tip-Adapter's copy of the reader);
    - ``'error'``: a ``ValueError`` naming the class.

    Sampling indices draws exactly the positions that sampling the items themselves draws, so successive
    calls on one generator seeded with ``random.Random(seed)`` reproduce successive Dassl calls after
    ``random.seed(seed)`` (CoOp draws its train sample, then its validation sample, from that one stream).
    The global ``random`` state is never touched.

    Args:
        rng (random.Random): the generator; it is advanced by the draw.
        labels (sequence of int): label of every item, in the dataset's order.
        num_shots (int): K.
        short_classes (str): 'error', 'keep_all' or 'replace'. Defaults to 'error'.
        exclude (set, optional): item indices that must not be drawn (e.g. the cache images when holding
            out a validation split).
        classnames (sequence of str, optional): names for error messages.
        source (str): where the items come from, for error messages.

    Returns:
        FewShotDraw: the indices and the short classes.
    """
    check_short_classes(short_classes)
    if num_shots < 0:
        raise ValueError(f'num_shots must be >= 0, got {num_shots}')
    chosen: List[int] = []
    short: Dict[int, int] = {}
    for label, items in group_by_label(labels).items():
        if exclude:
            items = [i for i in items if i not in exclude]
        if len(items) >= num_shots:
            chosen.extend(rng.sample(items, num_shots))
            continue
        short[label] = len(items)
        if short_classes == 'keep_all':
            chosen.extend(items)
        elif short_classes == 'replace' and items:
            chosen.extend(rng.choices(items, k=num_shots))
        else:
            name = f"'{classnames[label]}' " if classnames is not None and label < len(classnames) else ''
            raise ValueError(
                f'class {name}(label {label}) has {len(items)} usable images in {source}, fewer than the '
                f"{num_shots} required; set short_classes='keep_all' to keep all of them (CoOp/Dassl), "
                f"short_classes='replace' to sample with replacement (Tip-Adapter), or lower num_shots")
    return FewShotDraw(chosen, short)


def sample_few_shot(labels: Sequence[int], num_shots: int, seed, short_classes: str = 'error',
                    exclude: Optional[set] = None, classnames: Optional[Sequence[str]] = None,
                    source: str = 'the dataset') -> List[int]:
    """Indices of ``num_shots`` items per class: :func:`draw_few_shot` on a new ``random.Random(seed)``.

    A pure function of its arguments (the result of Dassl's ``generate_fewshot_dataset`` right after
    ``random.seed(seed)``).

    Args:
        labels (sequence of int): label of every item, in the dataset's order.
        num_shots (int): K.
        seed (int | str): seed of the generator.
        short_classes (str): what to do with a class with fewer than K items: 'error' (default),
            'keep_all' or 'replace' (see :func:`draw_few_shot`).
        exclude (set, optional): item indices that must not be drawn.
        classnames (sequence of str, optional): names for error messages.
        source (str): where the items come from, for error messages.

    Returns:
        list[int]: indices, grouped by class in order of first appearance.
    """
    return draw_few_shot(random.Random(seed), labels, num_shots, short_classes, exclude, classnames,
                         source).indices

#: the per-dataset quirks of Meta-Adapter's official readers (``datasets/*.py`` of ArsenalCheng/Meta-Adapter):
#: OxfordPets draws its queries from the unfiltered train split and its evaluated set from the unfiltered test
#: split (all 37 classes), EuroSAT its queries from the unfiltered train split, UCF101 its supports with a
#: hard-coded 16 shots
META_ADAPTER_QUIRKS = {
    'oxford_pets': dict(query_all_classes=True, test_all_classes=True),
    'eurosat': dict(query_all_classes=True),
    'ucf101': dict(support_shots=16),
}


def official_support_shots(dataset: Optional[str], num_shots: int) -> int:
    """Supports per class of Meta-Adapter's official reader of ``dataset`` (UCF101's is 16 whatever K is)."""
    return META_ADAPTER_QUIRKS.get(dataset or '', {}).get('support_shots', num_shots)


def _draw_within(rng: random.Random, labels: Sequence[int], pool: List[int], num_shots: int, short_classes: str,
                 classnames, source: str) -> FewShotDraw:
    """:func:`draw_few_shot` on the items ``pool`` (indices into ``labels``), indices mapped back."""
    drawn = draw_few_shot(rng, [labels[i] for i in pool], num_shots, short_classes, classnames=classnames,
                          source=source)
    return FewShotDraw([pool[i] for i in drawn.indices], drawn.short)


def meta_adapter_official_draws(labels: Dict[str, Optional[Sequence[int]]], base: Sequence[int], num_shots: int,
                                seed: int, dataset: Optional[str] = None,
                                classnames: Optional[Sequence[str]] = None) -> Dict[str, Tuple[str, FewShotDraw]]:
    """The three lists of Meta-Adapter's official data protocol, drawn as its readers draw them.

    After ``random.seed(seed)`` each official reader draws, in this order:

    - ``query`` (the official ``train``, meta-training queries): K images per base class of the train split
      (all classes for OxfordPets and EuroSAT, :data:`META_ADAPTER_QUIRKS`);
    - ``support`` (the official ``full``, the cache): K images per class of the **validation** split (16 for
      UCF101);
    - ``test`` (the official ``val``, the evaluated set): K images per novel class of the test split (all
      classes for OxfordPets),

    each with Dassl's ``generate_fewshot_dataset(repeat=True)``: a class with fewer than K images is sampled with
    replacement. ImageNet (no validation split, ``labels['val'] is None``) follows the official ImageNet reader:
    ``query`` = ``random.sample`` of K images per base class in label order, ``test`` = every novel-class image
    of the test split (no draw), then ``support`` = K images per class of the **train** split, independent of
    the queries; a class with fewer than K images is an error (``random.sample`` raises).

    Args:
        labels (dict): 'train', 'val' (None without a validation split) and 'test': the label of every item of
            each split, in the reader's order.
        base (sequence of int): the base classes; the novel classes are the others.
        num_shots (int): K.
        seed (int): the seed of ``random.seed``; the global generator is not touched.
        dataset (str, optional): the dataset's name, for :data:`META_ADAPTER_QUIRKS`.
        classnames (sequence of str, optional): for error messages.

    Returns:
        dict: name -> (split the indices point into, :class:`FewShotDraw`) for 'query', 'support' and 'test'.
    """
    quirks = META_ADAPTER_QUIRKS.get(dataset or '', {})
    base_set = {int(c) for c in base}
    rng = random.Random(seed)
    train, test = list(labels['train']), list(labels['test'])

    def pool(split_labels, keep_all: bool, want_base: bool) -> List[int]:
        return [i for i, label in enumerate(split_labels) if keep_all or ((int(label) in base_set) == want_base)]

    out: Dict[str, Tuple[str, FewShotDraw]] = {}
    if labels.get('val') is None:  # the official ImageNet reader
        query_pool = sorted(pool(train, False, True), key=lambda i: (int(train[i]), i))
        out['query'] = ('train', _draw_within(rng, train, query_pool, num_shots, 'error', classnames,
                                              'the base classes of the train split'))
        out['test'] = ('test', FewShotDraw(pool(test, False, False), {}))
        out['support'] = ('train', _draw_within(rng, train, sorted(range(len(train)), key=lambda i: (int(train[i]), i)),
                                                num_shots, 'error', classnames, 'the train split'))
        return out
    val = list(labels['val'])
    out['query'] = ('train', _draw_within(rng, train, pool(train, quirks.get('query_all_classes', False), True),
                                          num_shots, 'replace', classnames, 'the train split'))
    out['support'] = ('val', _draw_within(rng, val, list(range(len(val))), official_support_shots(dataset, num_shots),
                                          'replace', classnames, 'the validation split'))
    out['test'] = ('test', _draw_within(rng, test, pool(test, quirks.get('test_all_classes', False), False),
                                        num_shots, 'replace', classnames, 'the test split'))
    return out
