"""Few-shot sampling, compatible with Dassl/CoOp's ``generate_fewshot_dataset`` (pure Python)."""
import random
from typing import Dict, List, NamedTuple, Optional, Sequence

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
