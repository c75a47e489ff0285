"""Classify image files with a trained adapter, through mmpretrain's :class:`ImageClassificationInferencer`.

:func:`build_inferencer` builds mmpretrain's inferencer on the config's model and the checkpoint's state,
read with ``torch.load(weights_only=True)`` (:func:`~tip_adapter_mm.utils.checkpoint.safe_load`; mmengine's
``load_checkpoint``, which mmpretrain's ``get_model(..., pretrained=...)`` calls, passes no ``weights_only``).
The class names come from the checkpoint (``meta['dataset_meta']['classes']``, which mmengine stores from the
training dataset), so no dataset is read. :func:`predict_files` runs it on files, folders and list files,
decoding every image as the configs' ``LoadImageRGB`` does (``PIL.Image.open(...).convert('RGB')``) and
recording the files it cannot read instead of stopping. ``tools/infer.py`` (``tip-adapter-infer``) is the
command line over it.
"""
import os
import os.path as osp
import sys
import warnings
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

#: the extensions (lower case) of the files taken from a folder; any other file there is reported as skipped
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp', '.tif', '.tiff')
#: an input with this extension is a list of image paths, one per line
LIST_EXTENSION = '.txt'


def is_image_file(path: str) -> bool:
    """Whether ``path`` has one of :data:`IMAGE_EXTENSIONS` (case-insensitive)."""
    return osp.splitext(path)[1].lower() in IMAGE_EXTENSIONS


def collect_images(inputs: Sequence[str]) -> Tuple[List[str], List[Dict[str, str]]]:
    """Expand the inputs of ``tools/infer.py`` into image files.

    Args:
        inputs (sequence of str): each an image file (tried whatever its extension), a folder (searched
            recursively; its files with an extension of :data:`IMAGE_EXTENSIONS`, in any case, are taken, its
            other files are reported as skipped), or a ``.txt`` file listing image paths, one per line (blank
            lines and lines starting with ``#`` are ignored; a relative path is relative to the list file's
            folder; a listed folder is expanded as above).

    Returns:
        tuple[list[str], list[dict]]: the image files, in input order (a folder's files sorted), each once;
        and the failures, ``{'file': path, 'error': reason}``, for the inputs that are missing, not image
        files, or folders without any file.
    """
    files, failures, _ = _collect(inputs)
    return files, failures


def _collect(inputs: Sequence[str]) -> Tuple[List[str], List[Dict[str, str]], List[int]]:
    """:func:`collect_images`, plus the position of each failure: the number of files found before it."""
    files: List[str] = []
    failures: List[Dict[str, str]] = []
    positions: List[int] = []
    seen = set()

    def add(path: str):
        key = osp.normcase(osp.abspath(path))
        if key not in seen:
            seen.add(key)
            files.append(path)

    def fail(path: str, error: str):
        failures.append(dict(file=path, error=error))
        positions.append(len(files))

    def expand(path: str, listed: bool = False):
        if osp.isdir(path):
            found = []
            for root, dirs, names in os.walk(path):
                dirs.sort()
                found.extend(osp.join(root, name) for name in sorted(names))
            if not found:
                fail(path, 'folder holds no file')
            for file in found:
                if is_image_file(file):
                    add(file)
                else:
                    fail(file, f"not an image file (extension '{osp.splitext(file)[1]}' is not one of "
                               f"{', '.join(IMAGE_EXTENSIONS)})")
        elif not osp.exists(path):
            fail(path, 'listed file does not exist' if listed else 'file or folder does not exist')
        elif not listed and osp.splitext(path)[1].lower() == LIST_EXTENSION:
            try:
                with open(path, encoding='utf-8') as f:
                    lines = f.read().splitlines()
            except (OSError, UnicodeDecodeError) as e:
                fail(path, f'cannot read the list file ({type(e).__name__}: {e})')
                return
            entries = [line.strip() for line in lines]
            entries = [entry for entry in entries if entry and not entry.startswith('#')]
            if not entries:
                fail(path, 'list file names no image')
            for entry in entries:
                entry = osp.expanduser(entry)
                expand(entry if osp.isabs(entry) else osp.join(osp.dirname(path), entry), listed=True)
        else:
            add(path)  # an image file named explicitly: decoding decides, whatever its extension

    for item in inputs:
        expand(str(item))
    return files, failures, positions


def _decode_error(error: Exception) -> str:
    from PIL import UnidentifiedImageError
    if isinstance(error, UnidentifiedImageError):
        return 'cannot read image: not an image file, or a format PIL cannot identify (corrupt?)'
    return f'cannot read image ({type(error).__name__}: {error})'


def _checkpoint_meta(checkpoint: dict) -> dict:
    meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
    return meta if isinstance(meta, dict) else {}


def build_inferencer(config, checkpoint: Optional[str], device: Optional[str] = None,
                     cfg_options: Optional[dict] = None):
    """mmpretrain's ``ImageClassificationInferencer`` on a trained adapter.

    The model is built from the config (``mmpretrain.apis.get_model``, without weights) and the checkpoint's
    state dict is loaded into it after reading the file with ``torch.load(weights_only=True)``: nothing in the
    file is executed. The class names are the checkpoint's ``meta['dataset_meta']['classes']`` (no dataset is
    read, the config's ``data_root`` is not used); without them the classes are named by their index.

    Args:
        config (str | Config): the config of the run (its work dir holds a copy with the run's options).
        checkpoint (str): the checkpoint the run saved (``final.pth``, or the ``epoch_N.pth`` named by
            ``last_checkpoint``), or an adapter file written by ``tools/export_adapter.py`` (``.safetensors``:
            then the model and pipeline come from its header, ``config`` is unused (may be None) and only
            ``model.backbone.model_name`` / ``model.backbone.pretrained`` of ``cfg_options`` apply; see
            :func:`~tip_adapter_mm.apis.export.load_adapter`). A ``.safetensors`` ``config`` with
            ``checkpoint=None`` is taken the same way.
        device (str, optional): 'cpu', 'cuda', 'cuda:1', ...; None: CUDA when available, else the CPU.
        cfg_options (dict, optional): merged into the config (as ``--cfg-options``), e.g. another
            ``model.backbone.pretrained``.

    Returns:
        mmpretrain.apis.ImageClassificationInferencer: with ``classes`` set.

    Raises:
        FileNotFoundError: the config or the checkpoint does not exist.
        tip_adapter_mm.utils.checkpoint.CheckpointError: the checkpoint is unreadable or would run code.
        ValueError: the checkpoint does not fit the config's model, or holds no cache for its head.
    """
    import torch
    from mmengine.config import Config
    from mmengine.runner.checkpoint import load_state_dict
    from mmpretrain.apis import ImageClassificationInferencer, get_model

    from ..utils.checkpoint import safe_load

    if checkpoint is None and str(config).endswith('.safetensors'):
        config, checkpoint = None, config
    if str(checkpoint).endswith('.safetensors'):
        from .export import load_adapter
        options = dict(cfg_options or {})
        return load_adapter(checkpoint, device=device, model_name=options.get('model.backbone.model_name'),
                            pretrained=options.get('model.backbone.pretrained'))
    if isinstance(config, Config):
        cfg = config.copy()
    else:
        if not osp.isfile(str(config)):
            raise FileNotFoundError(f"config '{config}' does not exist")
        cfg = Config.fromfile(str(config))
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    state = safe_load(checkpoint, map_location='cpu')
    if device is None:
        device = 'cuda' if torch.cuda.is_available() else 'cpu'
    model = get_model(cfg, pretrained=False)
    state_dict = state.get('state_dict', state) if isinstance(state, dict) else None
    if not isinstance(state_dict, dict) or not state_dict:
        raise ValueError(f"checkpoint '{checkpoint}' holds no state dict")
    state_dict = {(k[len('module.'):] if k.startswith('module.') else k): v for k, v in state_dict.items()}
    load_state_dict(model, state_dict, strict=True)
    ready = getattr(getattr(model, 'head', None), 'cache_ready', None)
    if isinstance(ready, torch.Tensor) and not bool(ready):
        raise ValueError(f"checkpoint '{checkpoint}' holds no cache for the head (head.cache_ready is False): it "
                         'is not the checkpoint of a finished run (e.g. converted adapter weights only); '
                         'classify with the checkpoint the run saved')
    dataset_meta = dict(_checkpoint_meta(state).get('dataset_meta') or {})
    num_classes = getattr(getattr(model, 'head', None), 'num_classes', None)
    classes = dataset_meta.get('classes')
    if not classes:
        warnings.warn(f"checkpoint '{checkpoint}' stores no class names (meta['dataset_meta']['classes']): the "
                      'classes are named by their index')
        classes = tuple(str(i) for i in range(num_classes or 0)) or None
    elif num_classes is not None and len(classes) != num_classes:
        raise ValueError(f"checkpoint '{checkpoint}' names {len(classes)} classes but its head has {num_classes}")
    dataset_meta['classes'] = tuple(classes) if classes else classes
    model._dataset_meta = dataset_meta  # as get_model(..., pretrained=checkpoint) sets it
    return ImageClassificationInferencer(model, device=device)


def _progress(total: int, enabled: bool):
    """A progress bar on stderr with ``update(n)`` and ``close()``: tqdm when installed, else mmengine's."""
    class _Null:
        def update(self, n=1):
            pass

        def close(self):
            pass

    if not enabled or total <= 0:
        return _Null()
    try:
        from tqdm import tqdm
        return tqdm(total=total, unit='img', file=sys.stderr, desc='classifying')
    except ImportError:
        from mmengine.utils import ProgressBar

        class _Bar(ProgressBar):
            def update(self, n=1):
                super().update(n)

            def close(self):
                self.file.write('\n')
                self.file.flush()

        return _Bar(total, file=sys.stderr)


def _result(path: str, scores: np.ndarray, classes: Optional[Sequence[str]], topk: int) -> dict:
    order = np.argsort(-scores, kind='stable')[:topk]
    top = [{'label': int(i), 'class': classes[i] if classes else str(int(i)), 'score': float(scores[i])}
           for i in order]
    return dict(file=path, pred_label=top[0]['label'], pred_class=top[0]['class'], pred_score=top[0]['score'],
                topk=top)


def predict_files(config,
                  checkpoint: Optional[str],
                  paths: Sequence[str],
                  topk: int = 5,
                  batch_size: int = 32,
                  device: Optional[str] = None,
                  cfg_options: Optional[dict] = None,
                  progress: Optional[bool] = None,
                  inferencer=None) -> Tuple[List[dict], List[Dict[str, str]]]:
    """Classify image files with a trained adapter.

    Each file is decoded as the configs' ``LoadImageRGB`` decodes (``PIL.Image.open(...).convert('RGB')``);
    the decoded images go through mmpretrain's ``ImageClassificationInferencer`` (its test pipeline, batching
    and model), so the predictions are those of ``ImageClassificationInferencer(model=config,
    pretrained=checkpoint)``. A file that cannot be read or decoded is recorded as a failure and the others
    are still classified.

    Args:
        config (str | Config): the run's config.
        checkpoint (str): its checkpoint (see :func:`build_inferencer`); unused when ``inferencer`` is given.
        paths (sequence of str): files, folders or ``.txt`` lists (:func:`collect_images`).
        topk (int): classes kept per image (at most the number of classes). Defaults to 5.
        batch_size (int): images per forward. Defaults to 32.
        device (str, optional): see :func:`build_inferencer`.
        cfg_options (dict, optional): see :func:`build_inferencer`.
        progress (bool, optional): show a progress bar on stderr; None: when there is more than one batch.
        inferencer (ImageClassificationInferencer, optional): an inferencer already built by
            :func:`build_inferencer` (then ``config``, ``checkpoint``, ``device`` and ``cfg_options`` are
            unused).

    Returns:
        tuple[list[dict], list[dict]]: one result per classified file, in input order: ``{'file', 'pred_label',
        'pred_class', 'pred_score', 'topk': [{'label', 'class', 'score'}, ...]}`` (scores are the model's
        softmax probabilities); and the failures, ``{'file': path, 'error': reason}``, in input order.
    """
    from ..datasets.transforms import read_image_rgb

    if topk < 1 or batch_size < 1:
        raise ValueError(f'topk and batch_size must be >= 1, got {topk} and {batch_size}')
    files, failures, positions = _collect(paths)
    if inferencer is None:
        inferencer = build_inferencer(config, checkpoint, device=device, cfg_options=cfg_options)
    classes = inferencer.classes
    bar = _progress(len(files), len(files) > batch_size if progress is None else progress)
    decoded: List[str] = []

    def images() -> Iterator[np.ndarray]:
        for index, path in enumerate(files):
            try:
                img = read_image_rgb(path)
            except Exception as e:  # noqa: BLE001 (PIL raises OSError, ValueError, SyntaxError, ...)
                failures.append(dict(file=path, error=_decode_error(e)))
                positions.append(index)
                bar.update(1)
                continue
            decoded.append(path)
            yield img

    results: List[dict] = []
    try:
        for data in inferencer.preprocess(images(), batch_size=batch_size):
            preds = inferencer.postprocess(inferencer.forward(data), None)
            for pred in preds:
                scores = np.asarray(pred['pred_scores'], dtype=np.float64)
                results.append(_result(decoded[len(results)], scores, classes, min(topk, scores.shape[0])))
            bar.update(len(preds))
    finally:
        bar.close()
    order = sorted(range(len(failures)), key=lambda i: positions[i])  # stable: in input order
    return results, [failures[i] for i in order]

