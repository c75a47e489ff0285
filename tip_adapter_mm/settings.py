"""The run settings: one top-level key per concept, and the places in a config that hold its value.

A config file is the whole experiment: read with ``Config.fromfile`` it already holds every value where the
modules read it (the head's ``num_shots``, each dataset's ``seed``, the loop's ``search_scale``, ...). The
top-level keys below name those values once, so that one override changes a concept everywhere::

    --cfg-options num_shots=8 fewshot_seed=2

:func:`resolve` does that for the runner the configs name (``runner_type = 'FewShotRunner'``, honoured by
the project's tools, mmpretrain's tools and ``mim``): it compares the config with its file, copies a changed
top-level value into the places that still hold the file's value, and refuses an edit of one place alone.
:func:`check_consistency` is what every run checks (also under a plain ``Runner.from_cfg``): each place
holds its key's value.

The module imports no mmengine: it works on any nested mapping.
"""
import difflib
import math
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Tuple

from .protocol import DATA_PROTOCOLS, HP_SELECTION

#: what fine-tuning reads: the stored augmented views, or the images
TRAIN_FROM = ('feature_bank', 'image')

LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')
EVALUATORS = ('val_evaluator', 'test_evaluator')

Path = Tuple[Any, ...]


def _is_mapping(node) -> bool:
    return isinstance(node, Mapping) or (hasattr(node, 'keys') and hasattr(node, '__getitem__'))  # mmengine Config


def _get(cfg: Mapping, path: Path, default=None):
    node = cfg
    for part in path:
        if _is_mapping(node) and not isinstance(part, int) and part in node:
            node = node[part]
        elif isinstance(node, (list, tuple)) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            return default
    return node


def _has(cfg: Mapping, path: Path) -> bool:
    missing = object()
    return _get(cfg, path, missing) is not missing


def _set(cfg, path: Path, value):
    node = cfg
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value


def _dataset_paths(cfg: Mapping, key: str) -> Iterator[Path]:
    """``(loader, 'dataset', ..., key)`` for every dataset of every loader (wrappers included) with ``key``."""
    for loader in LOADERS:
        path: Path = (loader, 'dataset')
        while _is_mapping(_get(cfg, path)):
            if key in _get(cfg, path):
                yield path + (key, )
            path = path + ('dataset', )


def _head(key: str) -> Callable[[Mapping], List[Path]]:
    return lambda cfg: [('model', 'head', key)] if _has(cfg, ('model', 'head', key)) else []


def _loop(key: str) -> Callable[[Mapping], List[Path]]:
    return lambda cfg: [('train_cfg', key)] if _has(cfg, ('train_cfg', key)) else []


def _datasets(key: str) -> Callable[[Mapping], List[Path]]:
    return lambda cfg: list(_dataset_paths(cfg, key))


def _evaluators(key: str) -> Callable[[Mapping], List[Path]]:
    def paths(cfg):
        found = []
        for name in EVALUATORS:
            evaluator = _get(cfg, (name, ))
            metrics = evaluator if isinstance(evaluator, (list, tuple)) else [evaluator]
            for i, metric in enumerate(metrics):
                if _is_mapping(metric) and key in metric:
                    found.append((name, i, key) if isinstance(evaluator, (list, tuple)) else (name, key))
        return found
    return paths


def _join(*getters) -> Callable[[Mapping], List[Path]]:
    return lambda cfg: [p for g in getters for p in g(cfg)]


#: top-level key -> (where its value lives, what it means)
SETTINGS: Dict[str, Tuple[Callable[[Mapping], List[Path]], str]] = {
    'num_shots': (_join(_head('num_shots'), _datasets('num_shots')),
                  'K, images per class in the cache (0: zero-shot CLIP)'),
    'fewshot_seed': (_datasets('seed'), 'the seed of the K-shot sample (and of the held-out validation split)'),
    'fewshot_split_file': (_datasets('split_file'),
                           "an earlier run's fewshot_split.json: its sampled lists instead of the seed"),
    'num_classes': (_head('num_classes'), "the dataset's class count (None: counted from the train split)"),
    'init_alpha': (_head('alpha'), 'the residual ratio alpha before (or without) the search'),
    'init_beta': (_head('beta'), 'the sharpness beta before (or without) the search'),
    'search_scale': (_loop('search_scale'), 'the largest [beta, alpha] of the search grids'),
    'hp_selection': (_loop('hp_selection'), f'what alpha, beta and the epoch are chosen on {HP_SELECTION}'),
    'max_epochs': (_loop('max_epochs'), 'training epochs (the cosine schedule follows)'),
    'train_from': (_loop('train_from'), "what fine-tuning reads: 'feature_bank' (stored views) or 'image'"),
    'base_classes': (_join(_head('base_classes'), _evaluators('base_classes'), _datasets('base_classes')),
                     'the base classes of a base/novel protocol'),
    'data_protocol': (_datasets('protocol'), f'the data protocol of a Meta-Adapter config {DATA_PROTOCOLS}: the '
                      "project's, or Meta-Adapter's official one (with hp_selection='legacy_test')"),
    'query_shots': (_datasets('query_shots'), "Meta-Adapter's meta-training queries per base class held out of the "
                    'K-shot sample (None: the base-class images of the sample)'),
}


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_real(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _valid_base(v, cfg) -> bool:
    if v is None:  # no base/novel split
        return True
    from .datasets.base_novel import resolve_classes, spec_values
    try:
        values = spec_values(v)
        if all(_is_int(x) for x in values):
            c = cfg.get('num_classes') if hasattr(cfg, 'get') else None
            resolve_classes(values, c if _is_int(c) else None)
    except (ValueError, KeyError, TypeError):
        return False
    return True


#: top-level key -> (test of a value given the config, what is expected)
VALID: Dict[str, Tuple[Callable[[Any, Mapping], bool], str]] = {
    'num_shots': (lambda v, cfg: _is_int(v) and v >= 0, 'an integer >= 0 (0: zero-shot CLIP)'),
    'fewshot_seed': (lambda v, cfg: _is_int(v), 'an integer'),
    'fewshot_split_file': (lambda v, cfg: v is None or isinstance(v, str), "a file path (an earlier run's "
                           'fewshot_split.json) or None'),
    'num_classes': (lambda v, cfg: v is None or (_is_int(v) and v >= 1),
                    "an integer >= 1, or None (the train split's class count, filled in by the project's runner)"),
    'init_alpha': (lambda v, cfg: _is_real(v) and v >= 0, 'a number >= 0'),
    'init_beta': (lambda v, cfg: _is_real(v) and v > 0, 'a number > 0'),
    'search_scale': (lambda v, cfg: isinstance(v, (list, tuple)) and len(v) == 2
                     and all(_is_real(x) and x > 0 for x in v), 'two numbers > 0, [beta, alpha]'),
    'hp_selection': (lambda v, cfg: v in HP_SELECTION, f'one of {HP_SELECTION}'),
    'max_epochs': (lambda v, cfg: _is_int(v) and v >= 1, '>= 1 to fine-tune'),
    'train_from': (lambda v, cfg: v in TRAIN_FROM, f'one of {TRAIN_FROM}'),
    'data_protocol': (lambda v, cfg: v in DATA_PROTOCOLS, f'one of {DATA_PROTOCOLS}'),
    'query_shots': (lambda v, cfg: v is None or (_is_int(v) and v >= 1), 'None or an integer >= 1'),
    'base_classes': (_valid_base, "None, a non-empty list of distinct class indices in [0, num_classes) or of "
                     "class names, or 'meta_adapter/<dataset>' (the published split)"),
}


def check_values(cfg: Mapping):
    """Raise ``ValueError`` naming the key, the value and what is expected, for a setting out of range."""
    for key, (valid, expected) in VALID.items():
        if key in cfg and not valid(cfg[key], cfg):
            raise ValueError(f'{key} must be {expected}, got {cfg[key]!r}')


def check_overrides(cfg: Mapping, original: Mapping, runtime_keys) -> None:
    """Refuse top-level keys that would silently do nothing.

    Args:
        cfg: the config after overrides.
        original: the config as its file defines it.
        runtime_keys: top-level keys that code reads when the run starts (mmengine's Runner arguments, the
            project's ``method`` and ``dataset_name``), besides :data:`SETTINGS`.

    Raises:
        ValueError: an unknown key (a misspelt setting: the message lists the settings and close names), or
            a changed variable of the config file (e.g. ``data_root``): those are read when the file is
            read, so changing one afterwards would change nothing (the message names the places that hold
            its value).
    """
    known = set(SETTINGS) | set(runtime_keys)
    for key in cfg.keys():
        if key in known:
            continue
        if key not in original:
            close = difflib.get_close_matches(key, sorted(known | set(original.keys())), n=3, cutoff=0.6)
            raise ValueError(f'unknown top-level key {key!r}' + (f' (did you mean {close}?)' if close else '')
                             + '; the settings are:\n' + describe())
        if not _same(cfg[key], original[key]):
            holders = [_dotted(p) for p in _find(original, original[key], ())
                       if len(p) > 1] if original[key] not in (None, True, False) else []
            raise ValueError(
                f'{key!r} is a variable of the config file, used while the file is read: changing it to '
                f'{cfg[key]!r} afterwards would change nothing. Set the places that use it instead'
                + (f': {", ".join(holders[:8])}' if holders else '') + '.')


def _find(node, value, path) -> Iterator[Path]:
    if _is_mapping(node):
        for k in node.keys():
            yield from _find(node[k], value, path + (k, ))
    elif isinstance(node, (list, tuple)) and not _same(node, value):
        for i, v in enumerate(node):
            yield from _find(v, value, path + (i, ))
    if path and _same(node, value):
        yield path


def _dotted(path: Path) -> str:
    return '.'.join(str(p) for p in path)


def places(cfg: Mapping, key: str) -> List[Path]:
    """The paths in ``cfg`` that hold the value of the top-level setting ``key``."""
    return SETTINGS[key][0](cfg)


def _same(a, b) -> bool:
    norm = (lambda v: list(v) if isinstance(v, tuple) else v)
    return norm(_plain(a)) == norm(_plain(b))


def _plain(value):
    if _is_mapping(value):
        return {k: _plain(value[k]) for k in value.keys()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def check_consistency(cfg: Mapping, source: Optional[str] = None):
    """Raise ``ValueError`` if a place holds another value than its top-level setting.

    Args:
        cfg: the config (any nested mapping).
        source (str, optional): the config file, for the message.
    """
    check_values(cfg)
    problems = []
    for key in SETTINGS:
        if key not in cfg:
            continue
        for path in places(cfg, key):
            if not _same(_get(cfg, path), cfg[key]):
                problems.append(f'{_dotted(path)}={_get(cfg, path)!r} but {key}={cfg[key]!r}')
    if problems:
        where = f" in '{source}'" if source else ''
        raise ValueError(f'inconsistent settings{where}: ' + '; '.join(problems) + '. Each of these is set by '
                         'its top-level key (e.g. --cfg-options num_shots=8), which changes every place at '
                         'once; a place changed alone would run another experiment than the one recorded')


def resolve(cfg, original: Optional[Mapping]) -> List[str]:
    """Apply changed top-level settings of ``cfg`` to their places, then check the result (in place).

    Args:
        cfg: the config after overrides (e.g. ``--cfg-options``), modified in place.
        original: the same config as its file defines it (``Config.fromfile``), or None when there is no
            file: then only :func:`check_consistency` runs.

    Returns:
        list of str: the settings that were changed and applied.

    Raises:
        ValueError: a place was changed alone (to another value than its key), or places disagree.
    """
    applied = []
    if original is not None and is_zero_shot(original) and not is_zero_shot(cfg):
        raise ValueError(f"num_shots={cfg.get('num_shots')!r}: this is a zero-shot CLIP config (num_shots = 0 in "
                         'its file), which has no cache; a K-shot cache would be encoded and never used. Use '
                         'the Tip-Adapter config of the dataset for K shots')
    if original is not None:
        for key in SETTINGS:
            if key not in cfg or key not in original or _same(cfg[key], original[key]):
                continue
            targets = places(cfg, key)
            if not targets:
                raise ValueError(f'{key}={cfg[key]!r}: nothing in this config reads {key} ({SETTINGS[key][1]}), '
                                 'so changing it would change nothing')
            for path in targets:
                value, before = _get(cfg, path), _get(original, path, object())
                if _same(value, before):
                    _set(cfg, path, cfg[key])
                elif not _same(value, cfg[key]):
                    raise ValueError(f'{key} was set to {cfg[key]!r} and {_dotted(path)} to {value!r}: set '
                                     f'{key} alone, it changes {_dotted(path)} too')
            applied.append(key)
    check_consistency(cfg, getattr(cfg, 'filename', None))
    return applied


def is_zero_shot(settings: Mapping) -> bool:
    """The one definition of zero-shot CLIP: no cache, ``num_shots == 0``.

    Args:
        settings: a config or a run's ``results.json`` record (both carry ``num_shots``).
    """
    return settings.get('num_shots') == 0


def describe() -> str:
    """One line per setting: the key and what it means (for error messages and documentation)."""
    return '\n'.join(f'  {key}: {text}' for key, (_, text) in SETTINGS.items())


# --- values that come from the backbone ------------------------------------------------------------------------
#
# The backbone (``model.backbone.model_name`` / ``pretrained``) determines its preprocessing and feature size
# (:func:`tip_adapter_mm.models.clip_preprocess.clip_preprocess`, read from open_clip). A config holds them where
# the modules read them (the pipelines, ``model.data_preprocessor``, ``model.head.feat_dim``), so the file alone is
# the experiment; :func:`backbone_updates` says which of those places hold "the backbone's value" and what it is:
#
# - a place holding None or ``'auto'``;
# - a place still holding the file's value, when the backbone differs from the file's and that value was the
#   file's backbone's (a backbone switch is one override: ``--cfg-options model.backbone.model_name=ViT-B-16
#   model.backbone.pretrained=laion2b_s34b_b88k``);
# - a place holding the value of the backbone the base files are written for (:data:`BASE_BACKBONE`) under
#   another backbone (a config file that inherits a method config and sets only ``model.backbone``).
#
# Any other value is the config's own choice and wins (e.g. the bilinear test resize of the official
# Meta-Adapter ImageNet config); only ``feat_dim`` must always be the backbone's (:func:`check_backbone`). The
# project's runner fills the places (:func:`tip_adapter_mm.engine.runner.resolve_config`); under a plain
# ``Runner.from_cfg``, ``RunCheckHook`` raises for each place that would run with another backbone's value.

#: pipeline transform type -> {field: derived key}
PIPELINE_FIELDS = {
    'RandomResizedCrop': {'scale': 'image_size', 'interpolation': 'interpolation'},
    'ResizeEdge': {'scale': 'image_size', 'interpolation': 'interpolation'},
    'CenterCrop': {'crop_size': 'image_size'},
}
#: the backbone that the project's base files (configs/_base_/models/clip_rn50.py, datasets/fewshot_224.py) are
#: written for: their values are "the backbone's" under any other backbone
BASE_BACKBONE = ('RN50', 'openai')
#: the data preprocessor takes mean and std in pixel units
PIXEL = 255.
AUTO = (None, 'auto')


def _pipeline_places(cfg: Mapping) -> Iterator[Tuple[Path, str]]:
    for path in _dataset_paths(cfg, 'pipeline'):
        pipeline = _get(cfg, path)
        for i, transform in enumerate(pipeline if isinstance(pipeline, (list, tuple)) else ()):
            fields = PIPELINE_FIELDS.get(transform.get('type')) if _is_mapping(transform) else None
            for name, key in (fields or {}).items():
                if name in transform:
                    yield path + (i, name), key


def backbone_places(cfg: Mapping) -> List[Tuple[Path, str]]:
    """``(path, derived key)`` of every place of ``cfg`` that holds a value of the backbone: ``image_size``
    and ``interpolation`` in the datasets' pipelines, ``mean`` and ``std`` of ``model.data_preprocessor``,
    ``model.head.feat_dim``."""
    found = list(_pipeline_places(cfg))
    for name in ('mean', 'std'):
        if _has(cfg, ('model', 'data_preprocessor', name)):
            found.append((('model', 'data_preprocessor', name), name))
    if _has(cfg, ('model', 'head', 'feat_dim')):
        found.append((('model', 'head', 'feat_dim'), 'feat_dim'))
    return found


def backbone_of(cfg: Mapping) -> Optional[Tuple[str, Any]]:
    """``(model_name, pretrained)`` of a ``CLIPBackbone`` config, else None."""
    backbone = _get(cfg, ('model', 'backbone'))
    if not _is_mapping(backbone) or backbone.get('type') != 'CLIPBackbone':
        return None
    return backbone.get('model_name', 'RN50'), backbone.get('pretrained', 'openai')


def derived_values(preprocess) -> Dict[str, Any]:
    """The config values of a :class:`~tip_adapter_mm.models.clip_preprocess.CLIPPreprocess`, by derived key."""
    size = preprocess.image_size
    return dict(image_size=size if isinstance(size, int) else list(size),
                interpolation=preprocess.interpolation,
                mean=[m * PIXEL for m in preprocess.mean], std=[s * PIXEL for s in preprocess.std],
                feat_dim=preprocess.feat_dim)


def _close(a, b) -> bool:
    a, b = _plain(a), _plain(b)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    if _is_real(a) and _is_real(b):
        return math.isclose(a, b, rel_tol=1e-6)
    return a == b


def backbone_updates(cfg: Mapping, original: Optional[Mapping],
                     derive: Callable[[str, Any], Any]) -> List[Tuple[Path, str, Any, Any]]:
    """The places of ``cfg`` that hold "the backbone's value" but another one (see the comment above).

    Args:
        cfg: the config (after overrides).
        original: the config as its file defines it, or None (then only None / ``'auto'`` places are
            returned).
        derive: ``(model_name, pretrained) -> CLIPPreprocess``
            (:func:`tip_adapter_mm.models.clip_preprocess.clip_preprocess`).

    Returns:
        list of ``(path, derived key, current value, the backbone's value)``.

    Raises:
        ValueError: open_clip preprocesses the backbone with a resize mode other than ``'shortest'`` (what the
            pipelines' ``ResizeEdge`` + ``CenterCrop`` do), or with a non-square size.
    """
    backbone = backbone_of(cfg)
    if backbone is None:
        return []
    places_ = backbone_places(cfg)
    if not places_:
        return []
    preprocess = derive(*backbone)
    expected = derived_values(preprocess)
    if any(key == 'image_size' for _, key in places_):
        if preprocess.resize_mode != 'shortest' or not isinstance(preprocess.image_size, int):
            raise ValueError(
                f"open_clip preprocesses model '{preprocess.model_name}' ({backbone[1]}) with resize_mode="
                f"'{preprocess.resize_mode}' to {preprocess.image_size}; the pipelines' ResizeEdge + CenterCrop "
                "implement open_clip's 'shortest' mode to a square only")
    before = backbone_of(original) if original is not None else None
    switched = before is not None and not _same(before, backbone)
    old = derived_values(derive(*before)) if switched else None
    # the project's base files hold BASE_BACKBONE's values: a place still holding one of them under another
    # backbone was inherited, not chosen (e.g. a user's config file that inherits a method config and sets only
    # model.backbone.model_name)
    base = derived_values(derive(*BASE_BACKBONE)) if not _same(backbone, BASE_BACKBONE) else None
    missing = object()
    updates = []
    for path, key in places_:
        value = _get(cfg, path)
        if (isinstance(value, str) or value is None) and value in AUTO:
            updates.append((path, key, value, expected[key]))
        elif _close(value, expected[key]):
            continue
        elif switched and _same(value, _get(original, path, missing)) and _close(value, old[key]):
            updates.append((path, key, value, expected[key]))
        elif base is not None and _close(value, base[key]):
            updates.append((path, key, value, expected[key]))
    return updates


def describe_backbone_updates(cfg: Mapping, updates) -> str:
    """One line for the places :func:`backbone_updates` returned: each key, its value and the backbone's."""
    name, pretrained = backbone_of(cfg)
    return f"model.backbone {name!r} ({pretrained}) needs " + '; '.join(
        f'{_dotted(path)}={expected!r} (it holds {value!r})' for path, _, value, expected in updates)


def apply_backbone(cfg, original: Optional[Mapping], derive) -> List[str]:
    """Fill the places that hold the backbone's value (in place); return them, dotted."""
    updates = backbone_updates(cfg, original, derive)
    for path, _, _, expected in updates:
        _set(cfg, path, expected)
    return [_dotted(path) for path, *_ in updates]


def check_backbone(cfg: Mapping, original: Optional[Mapping], derive, source: Optional[str] = None):
    """Raise ``ValueError`` naming each place that would run with another value than its backbone's.

    The places of :func:`backbone_updates`, and ``model.head.feat_dim`` when it is not the backbone's embedding
    size (explicit or not). What every run checks (``RunCheckHook``, and the project's runner's preflight,
    after :func:`apply_backbone` filled the places).
    """
    updates = backbone_updates(cfg, original, derive)
    head_dim = _get(cfg, ('model', 'head', 'feat_dim'))
    if backbone_of(cfg) is not None and _is_int(head_dim) and not any(u[1] == 'feat_dim' for u in updates):
        dim = derive(*backbone_of(cfg)).feat_dim  # a head of another size never fits: not a choice
        if head_dim != dim:
            updates.append((('model', 'head', 'feat_dim'), 'feat_dim', head_dim, dim))
    if updates:
        where = f" in '{source}'" if source else ''
        raise ValueError(f'values from the backbone{where}: {describe_backbone_updates(cfg, updates)}. Set them, '
                         "or leave them to the backbone (None / 'auto', or the file's values): the project's runner "
                         "(runner_type='FewShotRunner', as the configs name it) fills those")
