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


def keeps_epoch(rule: str, best_top1: Optional[float], top1: float) -> bool:
    """Whether an epoch scoring ``top1`` replaces the kept one (``best_top1``, None before the first) under
    ``rule``: ``best_val`` keeps the later epoch on ties, ``legacy_test`` the earlier one (the official code
    replaces only on strictly better), ``last`` always the latest."""
    if best_top1 is None or rule == 'last':
        return True
    return top1 > best_top1 if rule == 'legacy_test' else top1 >= best_top1


def get_protocol(name: str) -> Protocol:
    """The :class:`Protocol` of ``hp_selection=name``; a clear error for an unknown name."""
    if name not in PROTOCOLS:
        raise ValueError(f'hp_selection must be one of {HP_SELECTION}, got {name!r}')
    return PROTOCOLS[name]


#: the data protocols of the few-shot datasets (``FewShotDataset(protocol=...)``, the configs' ``data_protocol``):
#: 'default', the project's; 'meta_adapter_official', Meta-Adapter's official one (supports sampled from the
#: validation split, a K-shot sample of the novel test images evaluated, the readers' per-dataset quirks),
#: which selects on test and is therefore used with ``hp_selection='legacy_test'`` (or 'none')
DATA_PROTOCOLS = ('default', 'meta_adapter_official')
#: the hp_selection modes each data protocol can be used with
DATA_PROTOCOL_SELECTION = {'default': HP_SELECTION, 'meta_adapter_official': ('legacy_test', 'none')}


def check_data_protocol(data_protocol: str, hp_selection: str):
    """Raise a ``ValueError`` for an unknown data protocol or one used with a selection it has no split for."""
    if data_protocol not in DATA_PROTOCOLS:
        raise ValueError(f'data_protocol must be one of {DATA_PROTOCOLS}, got {data_protocol!r}')
    allowed = DATA_PROTOCOL_SELECTION[data_protocol]
    if hp_selection not in allowed:
        raise ValueError(f'data_protocol={data_protocol!r} has no validation split (its supports are the validation '
                         f'sample, and the official code selects the epoch on test): hp_selection must be one of '
                         f'{allowed}, got {hp_selection!r}')


def epoch_rule_label(rule: str) -> str:
    """``results.json``'s ``selection_split`` of an epoch rule."""
    return 'test (legacy)' if rule == 'legacy_test' else 'val'
