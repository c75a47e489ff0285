"""The methods as plain Python objects on CLIP features: no runner, no config, no dataset.

Each class wraps the registered head the configs use (:class:`~tip_adapter_mm.models.CacheHead`,
:class:`~tip_adapter_mm.models.MetaAdapterHead`), so its logits are computed by the same code as a run's, and
Tip-Adapter's alpha/beta search is the runner's (:func:`~tip_adapter_mm.functional.search_tip_hparams`)::

    from tip_adapter_mm.apis import TipAdapter, MetaAdapter, zero_shot_weights
    text = zero_shot_weights(['cat', 'dog'], ['a photo of a {}.'], 'ViT-B-16', 'openai')   # [C, D]
    tip = TipAdapter.fit(text, cache_features, cache_labels, val_features, val_labels)  # searches alpha, beta
    tip.finetune(cache_views, cache_labels, val_features, val_labels)   # Tip-Adapter-F
    tip.predict(test_features)          # class indices; predict_proba: probabilities
    tip.save('tip.safetensors')         # TipAdapter.load('tip.safetensors')
    tip.predict(encode_images('work_dirs/run/run_config.py', ['cat.jpg']))   # images, as the run encodes them
    meta = MetaAdapter.load('meta_run.safetensors')   # a file of tools/export_adapter.py

Features are raw or L2-normalised CLIP image features ([N, D]; cache features may also be augmented views
[V, N, D], averaged as the official recipe does). Files are safetensors with the JSON header of
:mod:`~tip_adapter_mm.apis.export` (nothing is unpickled); a file exported from a run also holds the model
and test pipeline, so :func:`~tip_adapter_mm.apis.export.load_adapter` can classify images with it.
"""
import json
from typing import Optional, Sequence, Tuple

import torch

from ..functional import cache_keys_from_views, l2_normalize, search_tip_hparams, tip_search_grids
from ..protocol import keeps_epoch
from .export import FORMAT, FORMAT_VERSION, HEADER_KEY, PREFIX, _check_out, read_adapter


def zero_shot_weights(classnames: Sequence[str], templates: Sequence[str] = ('a photo of a {}.', ),
                      model_name: str = 'RN50', pretrained: Optional[str] = 'openai', backbone=None) -> torch.Tensor:
    """CLIP's zero-shot classifier: class names x templates -> normalised, averaged, re-normalised [C, D].

    Args:
        classnames (sequence of str): the class names, in label order.
        templates (sequence of str): prompt templates with ``{}`` for the name.
        model_name (str): an open_clip model name. Defaults to 'RN50'.
        pretrained (str, optional): an open_clip tag or a local weights file. Defaults to 'openai'.
        backbone (CLIPBackbone, optional): an already built backbone (then ``model_name`` and ``pretrained``
            are unused).

    Returns:
        Tensor: the text weights [C, D] on the CPU.
    """
    if backbone is None:
        from ..models.clip_backbone import CLIPBackbone
        backbone = CLIPBackbone(model_name=model_name, pretrained=pretrained)
    return backbone.encode_text(list(classnames), list(templates)).float().cpu()


def encode_images(config, paths: Sequence[str], batch_size: int = 64, num_workers: int = 0,
                  device: Optional[str] = None) -> torch.Tensor:
    """Raw CLIP features [N, D] of image files, encoded as a run of ``config`` encodes its test images: its
    test pipeline (decoding with ``LoadImageRGB``), data preprocessor and backbone, through the project's
    feature extraction. No dataset on disk is needed; an unreadable image is an error naming the file.

    Args:
        config (str | Config): a config (e.g. the run's copy in its work dir).
        paths (sequence of str): image files.
        batch_size (int): images per forward. Defaults to 64.
        num_workers (int): loader workers. Defaults to 0.
        device (str, optional): e.g. 'cuda'; None: the CPU.

    Returns:
        Tensor: [N, D] float32 features on the CPU, in the order of ``paths`` (normalise them, or pass them to
        an adapter's :meth:`~_FeatureClassifier.predict`, which does).
    """
    from mmengine.config import Config
    from mmengine.dataset import BaseDataset
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS

    import tip_adapter_mm  # noqa: F401  (registers the project's modules)
    from ..engine.features import extract_features

    cfg = config if isinstance(config, Config) else Config.fromfile(str(config))
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    files = [str(p) for p in paths]

    class _Files(BaseDataset):
        def load_data_list(self):
            return [dict(img_path=p, gt_label=-1) for p in files]

    dataset = _Files(pipeline=cfg.test_dataloader.dataset.pipeline, serialize_data=False, test_mode=True)
    model = MODELS.build(cfg.model)
    if device:
        model = model.to(device)
    feats, _, _ = extract_features(model, dataset, batch_size=batch_size, num_workers=num_workers, desc='images')
    return feats[0]


def _features(features: torch.Tensor, feat_dim: int, what: str = 'features') -> torch.Tensor:
    features = torch.as_tensor(features)
    if features.dim() != 2 or features.shape[1] != feat_dim:
        raise ValueError(f'{what} must have shape [N, {feat_dim}], got {tuple(features.shape)}')
    return l2_normalize(features.float())


class _FeatureClassifier:
    """What the adapters share: a head, its logits, predictions and safetensors files."""

    method = ''

    def __init__(self, head, classes: Optional[Sequence[str]] = None):
        self.head = head.eval()
        self.classes = tuple(classes) if classes is not None else None
        if self.classes is not None and len(self.classes) != head.num_classes:
            raise ValueError(f'{len(self.classes)} class names for {head.num_classes} classes')

    @property
    def num_classes(self) -> int:
        return self.head.num_classes

    @property
    def feat_dim(self) -> int:
        return self.head.feat_dim

    @torch.no_grad()
    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """The method's logits [N, C] of CLIP image features [N, D] (raw or normalised)."""
        return self.head.logits(_features(features, self.feat_dim)).float()

    def predict_proba(self, features: torch.Tensor) -> torch.Tensor:
        """Class probabilities [N, C] (the softmax of :meth:`logits`)."""
        return self.logits(features).softmax(dim=-1)

    def predict(self, features: torch.Tensor) -> torch.Tensor:
        """Class indices [N] (the argmax of :meth:`logits`)."""
        return self.logits(features).argmax(dim=-1)

    def save(self, path: str, force: bool = False) -> dict:
        """Write the adapter to a safetensors file (atomically; an existing file only with ``force``).

        Args:
            path (str): the file, ending with ``.safetensors``.
            force (bool): overwrite an existing file.

        Returns:
            dict: the header written.
        """
        from safetensors.torch import save_file

        from ..utils.io import atomic_write_path
        _check_out(str(path), force)
        tensors = {PREFIX + k: v.detach().cpu().contiguous() for k, v in self.head.state_dict().items()}
        header = dict(format=FORMAT, format_version=FORMAT_VERSION, method=self.method,
                      head=type(self.head).__name__, feat_dim=self.feat_dim, num_classes=self.num_classes,
                      classes=list(self.classes) if self.classes is not None else None,
                      tensors=sorted(tensors))
        with atomic_write_path(str(path), durable=True) as tmp:
            save_file(tensors, tmp, metadata={HEADER_KEY: json.dumps(header), 'format': 'pt'})
        return header

    @classmethod
    def _read(cls, path: str, head_type: str) -> Tuple[dict, dict]:
        header, tensors = read_adapter(path, require_model=False)
        found = header.get('head') or ((header.get('model') or {}).get('head') or {}).get('type')
        if found != head_type:
            raise ValueError(f"'{path}' holds a {found or 'unknown'} adapter ({header.get('method')}); "
                             f'{cls.__name__} loads {head_type} files')
        state = {k[len(PREFIX):]: v for k, v in tensors.items() if k.startswith(PREFIX)}
        return header, state


class TipAdapter(_FeatureClassifier):
    """Tip-Adapter on features: ``100 f Wᵀ + alpha exp(-beta (1 - f Kᵀ)) L`` (zero-shot CLIP without a cache).

    Args:
        clip_weights (Tensor): the text classifier W, [C, D], rows of unit norm (e.g. :func:`zero_shot_weights`).
        cache_keys (Tensor, optional): normalised cache features K, [N, D]; None for zero-shot CLIP
            (:meth:`fit` builds them from raw features).
        cache_labels (Tensor, optional): their class indices, [N] (every class at least once).
        alpha (float): residual ratio. Defaults to 1.
        beta (float): sharpness. Defaults to 1.
        classes (sequence of str, optional): class names, kept in saved files.
    """

    method = 'Tip-Adapter'

    def __init__(self, clip_weights: torch.Tensor, cache_keys: Optional[torch.Tensor] = None,
                 cache_labels: Optional[torch.Tensor] = None, alpha: float = 1., beta: float = 1.,
                 classes: Optional[Sequence[str]] = None):
        from ..models.cache_head import CacheHead
        clip_weights = torch.as_tensor(clip_weights).float()
        if clip_weights.dim() != 2:
            raise ValueError(f'clip_weights must have shape [C, D], got {tuple(clip_weights.shape)}')
        if (cache_keys is None) != (cache_labels is None):
            raise ValueError('give both cache_keys and cache_labels, or neither (zero-shot CLIP)')
        c, d = clip_weights.shape
        n = 0 if cache_keys is None else int(torch.as_tensor(cache_keys).shape[0])
        head = CacheHead(num_classes=c, feat_dim=d, num_shots=0 if n == 0 else max(1, n // c), alpha=alpha, beta=beta,
                         train_keys=n > 0)  # the keys are a parameter for finetune()
        if n:
            cache_keys = torch.as_tensor(cache_keys).float()
            cache_labels = torch.as_tensor(cache_labels, dtype=torch.long)
        head.set_cache(clip_weights, cache_keys, cache_labels)
        super().__init__(head, classes)
        if n == 0:
            self.method = 'Zero-shot CLIP'

    @property
    def alpha(self) -> float:
        return float(self.head.alpha)

    @property
    def beta(self) -> float:
        return float(self.head.beta)

    @classmethod
    def fit(cls, clip_weights: torch.Tensor, features: torch.Tensor, labels: torch.Tensor,
            val_features: Optional[torch.Tensor] = None, val_labels: Optional[torch.Tensor] = None,
            search_scale: Sequence[float] = (7., 3.), search_step: Sequence[int] = (200, 20),
            alpha: float = 1., beta: float = 1., classes: Optional[Sequence[str]] = None) -> 'TipAdapter':
        """Build the cache from few-shot features and search alpha and beta on validation features.

        Args:
            clip_weights (Tensor): [C, D].
            features (Tensor): the few-shot images' features, [N, D], or V augmented views of them, [V, N, D]
                (raw features are averaged over the views and normalised, the official recipe).
            labels (Tensor): their class indices, [N].
            val_features, val_labels (Tensor, optional): validation features [M, D] and labels; without them
                ``alpha`` and ``beta`` are kept.
            search_scale (sequence of float): largest [beta, alpha] of the grids (the dataset's, e.g. (7, 3)).
            search_step (sequence of int): grid sizes [beta, alpha]. Defaults to (200, 20).
            alpha, beta (float): the values without a search.
            classes (sequence of str, optional): class names.
        """
        features = torch.as_tensor(features).float()
        keys = cache_keys_from_views(features if features.dim() == 3 else features[None])
        adapter = cls(clip_weights, keys, labels, alpha, beta, classes)
        if val_features is not None:
            adapter.search(val_features, val_labels, search_scale, search_step)
        return adapter

    def search(self, features: torch.Tensor, labels: torch.Tensor, search_scale: Sequence[float] = (7., 3.),
               search_step: Sequence[int] = (200, 20)) -> Tuple[float, float, float]:
        """Grid-search alpha and beta on validation features (the runner's search and tie rule) and keep them.

        Returns:
            tuple: (beta, alpha, validation top-1 in percent).
        """
        if self.head.cache_size == 0:
            raise ValueError('zero-shot CLIP has no alpha or beta to search')
        beta_grid, alpha_grid = tip_search_grids(search_scale, search_step)
        beta, alpha, top1 = search_tip_hparams(_features(features, self.feat_dim, 'val_features'),
                                               torch.as_tensor(labels, dtype=torch.long), self.head.clip_weights,
                                               self.head.cache_keys.detach(), self.head.cache_labels, beta_grid,
                                               alpha_grid)
        self.head.set_hparams(alpha, beta)
        return beta, alpha, top1

    def finetune(self, features: torch.Tensor, labels: torch.Tensor, val_features: Optional[torch.Tensor] = None,
                 val_labels: Optional[torch.Tensor] = None, epochs: int = 20, lr: float = 1e-3,
                 batch_size: int = 256, weight_decay: float = 0.01, eps: float = 1e-4,
                 search_scale: Sequence[float] = (7., 3.), search_step: Sequence[int] = (200, 20),
                 seed: int = 0) -> dict:
        """Tip-Adapter-F: fine-tune the cache keys, keep the best validation epoch, search alpha and beta again.

        The official recipe by default: the head's own loss (the one the runner's Tip-Adapter-F trains with:
        cross-entropy on its logits), AdamW (lr 1e-3, eps 1e-4, weight
        decay 0.01), cosine to 0 per step, batch 256, 20 epochs; each epoch reads one of the V stored views of
        every image (drawn from ``seed``), as the runner's feature bank does. Without validation features the
        last epoch is kept and alpha and beta are not searched.

        Args:
            features (Tensor): the cache images' raw features, [N, D] or V augmented views [V, N, D], in the
                order of the cache (``cache_labels``).
            labels (Tensor): their class indices, [N].
            val_features, val_labels (Tensor, optional): validation features [M, D] and labels.
            epochs, lr, batch_size, weight_decay, eps: the schedule.
            search_scale, search_step: the alpha/beta grids of the search after training.
            seed (int): the seed of the order and of the views.

        Returns:
            dict: ``epoch_top1`` (validation top-1 after each epoch, or None), ``selected_epoch`` (1-based; the
            later one on ties, as the runner) and, with validation features, ``beta``, ``alpha``, ``val_top1``.
        """
        import math

        from mmpretrain.structures import DataSample
        head = self.head
        if head.cache_size == 0:
            raise ValueError('zero-shot CLIP has no cache keys to fine-tune')
        feats = torch.as_tensor(features).float()
        feats = feats if feats.dim() == 3 else feats[None]
        labels = torch.as_tensor(labels, dtype=torch.long)
        if feats.shape[1:] != (head.cache_size, self.feat_dim) or labels.shape != (head.cache_size, ):
            raise ValueError(f'features [V, {head.cache_size}, {self.feat_dim}] and labels [{head.cache_size}] of '
                             f'the cache images expected, got {tuple(feats.shape)} and {tuple(labels.shape)}')
        if epochs < 1 or batch_size < 1:
            raise ValueError(f'epochs and batch_size must be >= 1, got {epochs} and {batch_size}')
        num_views, n, _ = feats.shape
        optimizer = torch.optim.AdamW([head.cache_keys], lr=lr, eps=eps, weight_decay=weight_decay)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * math.ceil(n / batch_size),
                                                               eta_min=0.)
        generator = torch.Generator().manual_seed(seed)
        history, best, best_keys, selected = [], None, None, epochs
        for epoch in range(1, epochs + 1):
            head.train()
            order = torch.randperm(n, generator=generator)
            views = torch.randint(num_views, (n, ), generator=generator)
            for start in range(0, n, batch_size):
                index = order[start:start + batch_size]
                samples = [DataSample().set_gt_label(int(label)) for label in labels[index]]
                loss = head.loss((feats[views[index], index], ), samples)['loss']  # the runner's loss
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                scheduler.step()
            head.eval()
            if val_features is None:
                history.append(None)
                continue
            top1 = 100. * (self.predict(val_features) == torch.as_tensor(val_labels)).float().mean().item()
            history.append(top1)
            if keeps_epoch('best_val', best, top1):  # the runner's rule: the later epoch on ties
                best, best_keys, selected = top1, head.cache_keys.detach().clone(), epoch
        if best_keys is not None:
            with torch.no_grad():
                head.cache_keys.copy_(best_keys)
        result = dict(epoch_top1=history, selected_epoch=selected)
        if val_features is not None:
            result.update(zip(('beta', 'alpha', 'val_top1'), self.search(val_features, val_labels, search_scale,
                                                                         search_step)))
        self.method = 'Tip-Adapter-F'
        return result

    @classmethod
    def load(cls, path: str) -> 'TipAdapter':
        """A Tip-Adapter (or Tip-Adapter-F, or zero-shot CLIP) file: of :meth:`save` or of a run
        (``tools/export_adapter.py``)."""
        header, state = cls._read(path, 'CacheHead')
        try:
            adapter = cls(state['clip_weights'], state['cache_keys'] if state['cache_keys'].numel() else None,
                          state['cache_labels'] if state['cache_keys'].numel() else None,
                          float(state['alpha']), float(state['beta']), header.get('classes'))
        except KeyError as e:
            raise ValueError(f"'{path}' has no tensor {PREFIX}{e.args[0]}") from None
        adapter.method = header.get('method') or adapter.method
        return adapter


class MetaAdapter(_FeatureClassifier):
    """Meta-Adapter on features: the text weights refined by the meta-trained gated attention over the
    supports of any classes (``100 f ŵᵀ``), without a gradient step.

    Args:
        adapter_state (dict): the adapter's parameters (``q_proj.weight``, ``k_proj.weight``,
            ``alpha_proj.weight``, ``alpha_proj.bias``), e.g. :meth:`adapter_state` of another instance or of a
            loaded file: the meta-trained adapter is applied to new classes as is.
        clip_weights (Tensor): the text weights of the classes to classify, [C, D], rows of unit norm.
        support (Tensor): K normalised support features per class, [C, K, D] (e.g. the cache keys of
            :func:`~tip_adapter_mm.functional.cache_keys_from_views` grouped by class).
        classes (sequence of str, optional): class names.
    """

    method = 'Meta-Adapter'
    ADAPTER_KEYS = ('q_proj.weight', 'k_proj.weight', 'alpha_proj.weight', 'alpha_proj.bias')

    def __init__(self, adapter_state: dict, clip_weights: torch.Tensor, support: torch.Tensor,
                 classes: Optional[Sequence[str]] = None):
        from ..models.meta_adapter_head import MetaAdapterHead
        clip_weights = torch.as_tensor(clip_weights).float()
        support = torch.as_tensor(support).float()
        if clip_weights.dim() != 2 or support.dim() != 3 or support.shape[0] != clip_weights.shape[0] \
                or support.shape[2] != clip_weights.shape[1]:
            raise ValueError(f'clip_weights [C, D] and support [C, K, D] expected, got {tuple(clip_weights.shape)} '
                             f'and {tuple(support.shape)}')
        missing = [k for k in self.ADAPTER_KEYS if k not in adapter_state]
        if missing:
            raise ValueError(f'adapter_state has no {missing}')
        c, k, d = support.shape
        head = MetaAdapterHead(num_classes=c, feat_dim=d, num_shots=k)
        head.load_state_dict({key: adapter_state[key] for key in self.ADAPTER_KEYS}, strict=False)
        head.set_support(clip_weights, support)
        super().__init__(head, classes)

    def adapter_state(self) -> dict:
        """The adapter's parameters (to apply it to other classes)."""
        return {k: v.detach().clone() for k, v in self.head.state_dict().items() if k in self.ADAPTER_KEYS}

    @classmethod
    def load(cls, path: str, clip_weights: Optional[torch.Tensor] = None, support: Optional[torch.Tensor] = None,
             classes: Optional[Sequence[str]] = None) -> 'MetaAdapter':
        """A Meta-Adapter file (of :meth:`save` or of a run, ``tools/export_adapter.py``), on its own classes,
        or applied to new ones (``clip_weights`` [C, D] and ``support`` [C, K, D] of those classes)."""
        header, state = cls._read(path, 'MetaAdapterHead')
        if (clip_weights is None) != (support is None):
            raise ValueError('give both clip_weights and support (new classes), or neither (the file\'s classes)')
        if clip_weights is None:
            clip_weights, support, classes = state['clip_weights'], state['support'], header.get('classes')
        return cls(state, clip_weights, support, classes)


def load(path: str):
    """The adapter of a safetensors file, as :class:`TipAdapter` or :class:`MetaAdapter` (by its header)."""
    header, _ = read_adapter(path, require_model=False)
    head = header.get('head') or ((header.get('model') or {}).get('head') or {}).get('type')
    if head == 'MetaAdapterHead':
        return MetaAdapter.load(path)
    if head == 'CacheHead':
        return TipAdapter.load(path)
    raise ValueError(f"'{path}' holds an adapter of head {head!r}; known: CacheHead, MetaAdapterHead")

