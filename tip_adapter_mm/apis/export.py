"""Portable, safe adapter files: the head of a trained run in safetensors, with what rebuilds the classifier.

:func:`export_adapter` (``tools/export_adapter.py``) reads a checkpoint with ``torch.load(weights_only=True)``
(:func:`~tip_adapter_mm.utils.checkpoint.safe_load`) and writes every tensor of its state dict whose key starts
with ``head.`` (CacheHead: ``clip_weights``, ``cache_keys``, ``cache_labels``, ``alpha``, ``beta``,
``cache_ready``; MetaAdapterHead: ``clip_weights``, ``support``, ``cache_ready``, ``base_mask`` and the
projections) to a ``.safetensors`` file. Its metadata entry ``tip_adapter_mm`` is a JSON header
(:data:`HEADER_KEY`): the format version, the method, the run's ``model`` config and test pipeline, the class
names and templates, the feature size, the run identity and the selection protocol.

:func:`load_adapter` rebuilds mmpretrain's ``ImageClassificationInferencer`` from such a file with
``safetensors`` and ``json.loads`` only: nothing is unpickled and no code from the file is run. The frozen CLIP
weights are not in the file; they come from the header's ``model.backbone.pretrained`` (or the
``pretrained`` argument), and a backbone other than the one the adapter was made with is refused.
"""
import ast
import copy
import json
import os.path as osp
from typing import Any, Optional

#: the safetensors metadata key that holds the JSON header
HEADER_KEY = 'tip_adapter_mm'
#: the value of the header's ``format``
FORMAT = 'tip_adapter_mm.adapter'
#: the version of the header this code writes (and the newest it reads)
FORMAT_VERSION = 1
#: the extension of an adapter file
EXTENSION = '.safetensors'
#: the prefix of the exported state dict keys
PREFIX = 'head.'


def _plain(value: Any, where: str) -> Any:
    """``value`` as JSON data (ConfigDicts, tuples -> dicts, lists); anything else is a ``ValueError``."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f'{where}: key {key!r} is not a string, which a JSON header cannot hold')
            out[key] = _plain(item, f'{where}.{key}')
        return out
    if isinstance(value, (list, tuple)):
        return [_plain(item, f'{where}[{i}]') for i, item in enumerate(value)]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    try:
        import numpy as np
        if isinstance(value, np.generic):
            return value.item()
    except ImportError:  # pragma: no cover
        pass
    raise ValueError(f'{where}: {type(value).__name__} value {value!r} cannot be stored in the JSON header')


def _literal(node: ast.AST) -> Any:
    """The value of a config-text expression made of literals and ``dict(key=...)`` calls, without eval."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        items = [_literal(e) for e in node.elts]
        return tuple(items) if isinstance(node, ast.Tuple) else items
    if isinstance(node, ast.Dict):
        if any(k is None for k in node.keys):
            raise ValueError('** in a dict literal')
        return {_literal(k): _literal(v) for k, v in zip(node.keys, node.values)}
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == 'dict' \
            and not node.args and all(k.arg is not None for k in node.keywords):
        return {k.arg: _literal(k.value) for k in node.keywords}
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _literal(node.operand)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return -value if isinstance(node.op, ast.USub) else value
    raise ValueError(f'unsupported expression {ast.dump(node)[:80]}')


def parse_config_text(text: str, where: str = 'config text'):
    """Parse mmengine's ``Config.pretty_text`` (a checkpoint's ``meta['cfg']``) without running it.

    ``Config.fromstring(text, '.py')`` executes the text as Python; the text comes from the checkpoint, so it
    is parsed here with :mod:`ast` instead and only ``name = <literal>`` statements are accepted (literals,
    lists, tuples, dicts and ``dict(key=...)`` calls: what ``pretty_text`` writes for a plain config).

    Args:
        text (str): the config text.
        where (str): what the text is, for the messages.

    Returns:
        mmengine.config.Config: the config.

    Raises:
        ValueError: the text is not Python, or holds anything but plain assignments of literals.
    """
    from mmengine.config import Config
    try:
        tree = ast.parse(text)
    except SyntaxError as e:
        raise ValueError(f'{where} is not a Python config ({e.msg}, line {e.lineno})') from None
    values = {}
    for stmt in tree.body:
        if not (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1
                and isinstance(stmt.targets[0], ast.Name)):
            raise ValueError(f'{where}: line {stmt.lineno} is not a plain `name = value` assignment; pass the '
                             "run's config with --config")
        try:
            values[stmt.targets[0].id] = _literal(stmt.value)
        except ValueError as e:
            raise ValueError(f'{where}: the value of {stmt.targets[0].id!r} (line {stmt.lineno}) is not a plain '
                             f"literal ({e}); pass the run's config with --config") from None
    return Config(values)


def _check_out(out: str, force: bool):
    if not str(out).endswith(EXTENSION):
        raise ValueError(f"output '{out}' must end with {EXTENSION} (the file is written in safetensors format)")
    if osp.isdir(out):
        raise ValueError(f"output '{out}' is a folder")
    if osp.exists(out) and not force:
        raise FileExistsError(f"output '{out}' exists: pass --force (force=True) to overwrite it")


def build_header(cfg, meta: dict, state_dict: dict, checkpoint: str = '') -> dict:
    """The JSON header of an adapter file.

    Args:
        cfg (Config): the run's config.
        meta (dict): the checkpoint's ``meta`` (``dataset_meta``, ``run_identity``).
        state_dict (dict): the exported tensors (``head.*`` keys).
        checkpoint (str): the checkpoint's path, for the messages.

    Returns:
        dict: plain JSON data (see the module docstring).

    Raises:
        ValueError: the config has no model or test pipeline, the checkpoint no class names, or the feature
            sizes of the config, the run identity and the tensors disagree.
    """
    model = cfg.get('model')
    if not isinstance(model, dict) or not model.get('head') or not model.get('backbone'):
        raise ValueError(f"the config of '{checkpoint}' has no model with a backbone and a head")
    model = _plain(model.to_dict() if hasattr(model, 'to_dict') else model, 'model')
    model.setdefault('data_preprocessor', _plain(cfg.get('data_preprocessor'), 'data_preprocessor'))
    if model['backbone'].get('save_frozen'):  # the file holds no CLIP weights: they come from `pretrained`
        model['backbone']['save_frozen'] = False
    try:
        pipeline = cfg.test_dataloader.dataset.pipeline
    except AttributeError:
        pipeline = None
    if not pipeline:
        raise ValueError(f"the config of '{checkpoint}' has no test_dataloader.dataset.pipeline")
    dataset_meta = meta.get('dataset_meta') or {}
    classes = dataset_meta.get('classes')
    if not classes:
        raise ValueError(f"checkpoint '{checkpoint}' stores no class names (meta['dataset_meta']['classes'])")
    identity = dict(meta.get('run_identity') or {})
    feat_dim = int(state_dict['head.clip_weights'].shape[-1])
    for what, value in (('run identity feat_dim', identity.get('feat_dim')),
                        ('config model.head.feat_dim', model['head'].get('feat_dim'))):
        if value is not None and int(value) != feat_dim:
            raise ValueError(f"checkpoint '{checkpoint}': head.clip_weights has feature size {feat_dim} but the "
                             f'{what} is {value}')
    num_classes = int(state_dict['head.clip_weights'].shape[0])
    if len(classes) != num_classes:
        raise ValueError(f"checkpoint '{checkpoint}' names {len(classes)} classes but its head has {num_classes}")
    train_cfg = cfg.get('train_cfg') or {}
    header = dict(
        format=FORMAT,
        format_version=FORMAT_VERSION,
        method=identity.get('method') or cfg.get('method'),
        model=model,
        test_pipeline=_plain(pipeline, 'test_dataloader.dataset.pipeline'),
        classes=[str(c) for c in classes],
        templates=[str(t) for t in dataset_meta.get('templates') or ()],
        feat_dim=feat_dim,
        num_classes=num_classes,
        run_identity=_plain(identity, 'run_identity'),
        tensors=sorted(state_dict),
    )
    if dataset_meta.get('class_folders'):
        header['class_folders'] = [str(c) for c in dataset_meta['class_folders']]
    for key in ('data_protocol', 'dataset_name', 'num_shots', 'fewshot_seed'):
        if cfg.get(key) is not None:
            header[key] = _plain(cfg.get(key), key)
    hp_selection = cfg.get('hp_selection') or train_cfg.get('hp_selection')
    if hp_selection is not None:
        header['hp_selection'] = _plain(hp_selection, 'hp_selection')
    return header


def _head_state(state_dict: dict, cfg, checkpoint: str) -> dict:
    """The ``head.*`` tensors of a checkpoint's state dict, checked."""
    import torch
    state_dict = {(k[len('module.'):] if k.startswith('module.') else k): v for k, v in state_dict.items()}
    backbone = (cfg.get('model') or {}).get('backbone') or {}
    others = [k for k in state_dict if not k.startswith(PREFIX)]
    frozen_clip = backbone.get('freeze', True) and all(k.startswith('backbone.clip.') for k in others)
    if others and not frozen_clip:
        raise ValueError(f"checkpoint '{checkpoint}' holds trained weights outside the head ({others[:3]}...): "
                         'an adapter file holds the head only, so exporting would lose them')
    tensors = {}
    for key, value in state_dict.items():
        if key.startswith(PREFIX):
            if not isinstance(value, torch.Tensor):
                raise ValueError(f"checkpoint '{checkpoint}': state dict entry '{key}' is not a tensor")
            tensors[key] = value.detach().to('cpu').contiguous().clone()
    if 'head.clip_weights' not in tensors:
        raise ValueError(f"checkpoint '{checkpoint}' holds no head.clip_weights: it is not the checkpoint of a "
                         'Tip-Adapter / Tip-Adapter-F / Meta-Adapter run')
    ready = tensors.get('head.cache_ready')
    if ready is not None and not bool(ready):
        raise ValueError(f"checkpoint '{checkpoint}' holds no cache for the head (head.cache_ready is False): "
                         'it is not the checkpoint of a finished run')
    return tensors


def export_adapter(checkpoint: str, out: str, config=None, force: bool = False) -> dict:
    """Write the adapter state of a trained run to a safetensors file with a JSON header.

    The checkpoint is read with ``torch.load(weights_only=True)``; its ``head.*`` tensors are written with
    ``safetensors.torch.save_file`` and the header (:func:`build_header`) as the metadata entry
    :data:`HEADER_KEY`. The file is written to a temporary file in the same folder and renamed, so ``out``
    never holds a partial file, and nothing is written when a check fails.

    Args:
        checkpoint (str): the checkpoint the run saved (``final.pth``, or the file ``last_checkpoint`` names).
        out (str): the output file; must end with ``.safetensors``.
        config (str | Config, optional): the run's config; None: the config stored in the checkpoint
            (``meta['cfg']``, parsed without running it, see :func:`parse_config_text`).
        force (bool): overwrite an existing ``out``. Defaults to False.

    Returns:
        dict: the header written.

    Raises:
        ValueError: ``out`` does not end with ``.safetensors`` or is a folder, or the checkpoint is not the
            checkpoint of a finished adapter run (see :func:`build_header`).
        FileExistsError: ``out`` exists and ``force`` is False.
        FileNotFoundError: the checkpoint or the config does not exist.
        tip_adapter_mm.utils.checkpoint.CheckpointError: the checkpoint is not a torch file, or would run code.
    """
    from mmengine.config import Config
    from safetensors.torch import save_file

    from ..utils.checkpoint import safe_load
    from ..utils.io import atomic_write_path

    out = str(out)
    _check_out(out, force)
    state = safe_load(checkpoint, map_location='cpu')
    if not isinstance(state, dict):
        raise ValueError(f"checkpoint '{checkpoint}' is not a dict with a state_dict")
    meta = state.get('meta') if isinstance(state.get('meta'), dict) else {}
    state_dict = state.get('state_dict', state)
    if not isinstance(state_dict, dict) or not state_dict:
        raise ValueError(f"checkpoint '{checkpoint}' holds no state dict")
    if config is None:
        text = meta.get('cfg')
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"checkpoint '{checkpoint}' stores no config (meta['cfg']): pass the run's config "
                             'with --config')
        cfg = parse_config_text(text, f"the config stored in '{checkpoint}'")
    elif isinstance(config, Config):
        cfg = config
    else:
        if not osp.isfile(str(config)):
            raise FileNotFoundError(f"config '{config}' does not exist")
        cfg = Config.fromfile(str(config))
    tensors = _head_state(state_dict, cfg, str(checkpoint))
    header = build_header(cfg, meta, tensors, str(checkpoint))
    _check_out(out, force)  # again: the file may have appeared while reading
    with atomic_write_path(out, durable=True) as tmp:
        save_file(tensors, tmp, metadata={HEADER_KEY: json.dumps(header), 'format': 'pt'})
    return header


def read_adapter(path: str, require_model: bool = True):
    """The header and the tensors of an adapter file, read with safetensors and ``json.loads`` only.

    Args:
        path (str): a file written by :func:`export_adapter` (or by the feature API's ``save``).
        require_model (bool): require the model and test-pipeline configs (needed to classify images; a file
            saved by :mod:`~tip_adapter_mm.apis.adapters` classifies features only). Defaults to True.

    Returns:
        tuple[dict, dict[str, torch.Tensor]]: the header and the tensors (on the CPU).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: it is not a safetensors file, holds no header, or a header of a newer format.
    """
    from safetensors import safe_open
    path = osp.expanduser(str(path))
    if not osp.isfile(path):
        raise FileNotFoundError(f"adapter file '{path}' does not exist")
    try:
        with safe_open(path, framework='pt', device='cpu') as f:
            metadata = f.metadata() or {}
            tensors = {key: f.get_tensor(key) for key in f.keys()}
    except Exception as e:  # noqa: BLE001 - safetensors raises SafetensorError, OSError, ...
        raise ValueError(f"cannot read adapter file '{path}': not a safetensors file or damaged "
                         f'({type(e).__name__}: {e})') from None
    if HEADER_KEY not in metadata:
        raise ValueError(f"'{path}' is a safetensors file without a '{HEADER_KEY}' header: it was not written by "
                         'tools/export_adapter.py')
    try:
        header = json.loads(metadata[HEADER_KEY])
    except json.JSONDecodeError as e:
        raise ValueError(f"adapter file '{path}': its header is not valid JSON ({e})") from None
    if not isinstance(header, dict) or header.get('format') != FORMAT:
        raise ValueError(f"adapter file '{path}': its header is not a {FORMAT} header")
    version = header.get('format_version')
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ValueError(f"adapter file '{path}' has format version {version!r}; this version of tip_adapter_mm "
                         f'reads versions up to {FORMAT_VERSION}: upgrade it')
    for key in ('model', 'test_pipeline', 'classes', 'feat_dim') if require_model else ('feat_dim', ):
        if key not in header:
            raise ValueError(f"adapter file '{path}': its header has no '{key}'"
                             + (' (a file of the feature API, without the model and pipeline to classify images '
                                'with: load it with tip_adapter_mm.apis.load)' if key in ('model', 'test_pipeline')
                                else ''))
    return header, tensors


def _embed_dim(model_name: str, pretrained: Optional[str]):
    """(open_clip name, embedding size) of a backbone, from open_clip's model config (no weights are read);
    the size is None for a model whose config open_clip does not hold locally."""
    import open_clip

    from ..models.clip_backbone import resolve_model_name
    name = resolve_model_name(model_name, pretrained)
    model_cfg = open_clip.get_model_config(name)
    return name, (int(model_cfg['embed_dim']) if model_cfg and 'embed_dim' in model_cfg else None)


def load_adapter(path: str, device: Optional[str] = 'cpu', model_name: Optional[str] = None,
                 pretrained: Optional[str] = None):
    """mmpretrain's ``ImageClassificationInferencer`` on an adapter file written by :func:`export_adapter`.

    The model is built from the header's ``model`` config (``mmpretrain.apis.get_model``, without weights),
    the file's tensors are loaded strictly into it, and the inferencer's pipeline is the header's test
    pipeline; the class names are the header's. The file is read with safetensors and ``json.loads`` only.

    Args:
        path (str): the ``.safetensors`` adapter file.
        device (str, optional): 'cpu', 'cuda', 'cuda:1', ...; None: CUDA when available. Defaults to 'cpu'.
        model_name (str, optional): another open_clip model name for the backbone. It must be the one the
            adapter was made with (the file's cache and text weights live in that model's embedding space);
            any other is refused.
        pretrained (str, optional): where the CLIP weights are (an open_clip tag or a local file), when they
            are not where the header's ``model.backbone.pretrained`` says (e.g. on another machine). The file
            name must be the one the adapter was made with.

    Returns:
        mmpretrain.apis.ImageClassificationInferencer: with ``classes`` set.

    Raises:
        FileNotFoundError: the file (or the CLIP weights) does not exist.
        ValueError: the file is not an adapter file, or its backbone, weights or feature size differ from
            those of the backbone it is loaded with (the message names both), or its tensors do not fit the
            model.
    """
    import torch
    from mmengine.config import Config
    from mmpretrain.apis import ImageClassificationInferencer, get_model

    import tip_adapter_mm  # noqa: F401  (registers the project's models and transforms)

    header, tensors = read_adapter(path)
    feat_dim = int(header['feat_dim'])
    model_cfg = copy.deepcopy(header['model'])
    backbone = model_cfg.setdefault('backbone', {})
    identity = header.get('run_identity') or {}
    exported_name = backbone.get('model_name') or identity.get('backbone')
    if model_name is not None:
        backbone['model_name'] = model_name
    if pretrained is not None:
        backbone['pretrained'] = pretrained

    # the tensors against the header
    weights = tensors.get('head.clip_weights')
    if weights is None or weights.dim() != 2 or int(weights.shape[-1]) != feat_dim:
        raise ValueError(f"adapter file '{path}': head.clip_weights has shape "
                         f'{None if weights is None else tuple(weights.shape)}, but the header says feature size '
                         f'{feat_dim}')
    if len(header['classes']) != int(weights.shape[0]):
        raise ValueError(f"adapter file '{path}' names {len(header['classes'])} classes but its head has "
                         f'{int(weights.shape[0])}')
    # the backbone against the header, before building it (no weights are read or downloaded for this)
    name, dim = _embed_dim(backbone.get('model_name'), backbone.get('pretrained'))
    exported_pretrained = (header['model'].get('backbone') or {}).get('pretrained')
    exported = _embed_dim(exported_name, exported_pretrained)[0] if exported_name else None
    if (exported and name != exported) or (dim is not None and dim != feat_dim):
        raise ValueError(
            f"adapter file '{path}' was made with the CLIP backbone '{exported_name}' (feature size {feat_dim}), "
            f"but it is being loaded with '{backbone.get('model_name')}' (feature size {dim}): its cache and "
            'text weights live in another embedding space; load it with the backbone it was made with')
    saved_weights = identity.get('weights')
    given = backbone.get('pretrained')
    if saved_weights and given and osp.basename(str(given)) != saved_weights:
        raise ValueError(f"adapter file '{path}' was made with the CLIP weights '{saved_weights}', but it is being "
                         f"loaded with '{osp.basename(str(given))}' ({given}): its features live in another "
                         'embedding space')

    if device is None:
        device = 'cuda' if torch.cuda.is_available() else 'cpu'
    model = get_model(Config(dict(model=model_cfg)), pretrained=False)
    built_dim = getattr(getattr(model, 'backbone', None), 'feat_dim', None)
    if built_dim is not None and int(built_dim) != feat_dim:
        raise ValueError(f"adapter file '{path}' has feature size {feat_dim} but the backbone "
                         f"'{backbone.get('model_name')}' embeds to {built_dim}")
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as e:
        raise ValueError(f"adapter file '{path}' does not fit the model of its header: {e}") from None
    dataset_meta = dict(classes=tuple(header['classes']))
    if header.get('templates'):
        dataset_meta['templates'] = tuple(header['templates'])
    if header.get('class_folders'):
        dataset_meta['class_folders'] = tuple(header['class_folders'])
    model._dataset_meta = dataset_meta
    model._config = Config(dict(model=model_cfg, test_dataloader=dict(dataset=dict(
        pipeline=copy.deepcopy(header['test_pipeline'])))))
    return ImageClassificationInferencer(model, device=device)
