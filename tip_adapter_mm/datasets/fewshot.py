"""Few-shot sampling, compatible with Dassl/CoOp's ``generate_fewshot_dataset`` (pure Python)."""
import random
from typing import Dict, List, Optional, Sequence


def group_by_label(labels: Sequence[int]) -> Dict[int, List[int]]:
    """Item indices per label, labels in order of first appearance (a dict keeps insertion order)."""
    groups: Dict[int, List[int]] = {}
    for idx, label in enumerate(labels):
        groups.setdefault(int(label), []).append(idx)
    return groups


def sample_few_shot(labels: Sequence[int], num_shots: int, seed, allow_replacement: bool = False,
                    exclude: Optional[set] = None, classnames: Optional[Sequence[str]] = None,
                    source: str = 'the dataset') -> List[int]:
    """Indices of ``num_shots`` items per class.

    The algorithm of Dassl (used by CoOp and Tip-Adapter): one ``random.Random(seed)`` stream; classes in
    order of first appearance; ``rng.sample(items, K)`` per class, or ``rng.choices(items, k=K)`` for a class
    with fewer than K items when ``allow_replacement`` is set. Sampling indices draws exactly the same
    positions as sampling the items themselves.

    Args:
        labels (sequence of int): label of every item, in the dataset's order.
        num_shots (int): K.
        seed (int | str): seed of the generator.
        allow_replacement (bool): sample with replacement for classes with fewer than K items (the official
            behaviour); otherwise such a class is an error.
        exclude (set, optional): item indices that must not be drawn (e.g. the cache images when holding
            out a validation split).
        classnames (sequence of str, optional): names for error messages.
        source (str): where the items come from, for error messages.

    Returns:
        list[int]: indices, grouped by class in order of first appearance.
    """
    if num_shots < 0:
        raise ValueError(f'num_shots must be >= 0, got {num_shots}')
    rng = random.Random(seed)
    chosen: List[int] = []
    for label, items in group_by_label(labels).items():
        if exclude:
            items = [i for i in items if i not in exclude]
        if len(items) >= num_shots:
            chosen.extend(rng.sample(items, num_shots))
        elif allow_replacement and items:
            chosen.extend(rng.choices(items, k=num_shots))
        else:
            name = f"'{classnames[label]}' " if classnames is not None and label < len(classnames) else ''
            raise ValueError(
                f'class {name}(label {label}) has {len(items)} usable images in {source}, fewer than the '
                f'{num_shots} required; set allow_replacement=True to sample with replacement as the '
                'official code does, or lower num_shots')
    return chosen
