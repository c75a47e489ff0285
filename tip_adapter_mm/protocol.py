"""The hyper-parameter selection protocols: which split alpha, beta and the epoch are chosen on.

One table for every loop, hook and record (the config's ``hp_selection``, which the loops read from
``train_cfg.hp_selection``):

- ``full_val``: the whole validation split (the official protocol of the 10 CoOp datasets);
- ``fewshot_val``: min(K, 4) validation images per class (CoOp's protocol; datasets without a validation
  split, such as ImageNet, hold these images out of train, disjoint from the cache);
- ``none``: nothing is selected: the configured alpha and beta, the last epoch;
- ``legacy_test``: the official ImageNet protocol, which tunes on the **test** split; available only by this
  name, and ``results.json`` says ``"selection_split": "test (legacy)"``.

No mmengine import: the table is plain data.
"""
from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class Protocol:
    """What one ``hp_selection`` mode means.

    Args:
        name (str): the mode.
        split (str): the split whose features select ('val' or 'test').
        val_mode (str, optional): the few-shot datasets' ``val_mode`` for the validation split
            ('full' or 'fewshot'); None keeps the dataset's own.
        search (bool): whether alpha and beta are searched.
        epoch_rule (str): how fine-tuning keeps an epoch: 'best_val', 'last' or 'legacy_test'.
        label (str): ``results.json``'s ``selection_split``.
    """

    name: str
    split: str
    val_mode: Optional[str]
    search: bool
    epoch_rule: str
    label: str


PROTOCOLS = {
    'full_val': Protocol('full_val', 'val', 'full', True, 'best_val', 'val'),
    'fewshot_val': Protocol('fewshot_val', 'val', 'fewshot', True, 'best_val', 'val'),
    'none': Protocol('none', 'val', None, False, 'last', 'none'),
    'legacy_test': Protocol('legacy_test', 'test', None, True, 'legacy_test', 'test (legacy)'),
}

HP_SELECTION = tuple(PROTOCOLS)

#: epoch rules and the split each scores on
EPOCH_RULES = {'best_val': 'val', 'last': 'val', 'legacy_test': 'test'}


def get_protocol(name: str) -> Protocol:
    """The :class:`Protocol` of ``hp_selection=name``; a clear error for an unknown name."""
    if name not in PROTOCOLS:
        raise ValueError(f'hp_selection must be one of {HP_SELECTION}, got {name!r}')
    return PROTOCOLS[name]


def epoch_rule_label(rule: str) -> str:
    """``results.json``'s ``selection_split`` of an epoch rule."""
    return 'test (legacy)' if rule == 'legacy_test' else 'val'
