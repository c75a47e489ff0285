from typing import Optional, Sequence, Tuple

import torch
import torch.nn as nn
from mmpretrain.models.heads import ClsHead
from mmpretrain.registry import MODELS

from ..functional import check_cache_labels, l2_normalize, meta_adapter_logits, meta_adapter_weights
from ..datasets.base_novel import needs_names, resolve_classes
from .cache_head import check_head_sizes

#: the adapter parameters, named as in the official ``MetaAdapter`` state dict
ADAPTER_KEYS = ('q_proj.weight', 'k_proj.weight', 'alpha_proj.weight', 'alpha_proj.bias')
#: the buffers that hold the text classifier and the support cache
CACHE_BUFFERS = ('clip_weights', 'support', 'cache_ready')


@MODELS.register_module()
class MetaAdapterHead(ClsHead):
    """Meta-Adapter's classifier (Cheng et al., NeurIPS 2023): CLIP text weights refined by attention over
    a few-shot support cache.

    ``logits = 100 f ŵᵀ`` on the L2-normalised backbone feature f, with ``ŵ`` the text weights refined by
    gated single-head attention over [text token; K support features] per class
    (:func:`~tip_adapter_mm.functional.meta_adapter_weights`). The trainable parameters are named as in the
    official ``MetaAdapter`` module (``q_proj.weight``, ``k_proj.weight``, ``alpha_proj.weight``,
    ``alpha_proj.bias``: 2 D² + D + 1 values) and initialised as there (xavier-uniform weights, gate bias 1),
    so official weight files load after ``tools/convert_meta_adapter.py`` adds the ``head.`` prefix.

    The text weights ``clip_weights`` [C, D] and the support cache ``support`` [C, K, D] are buffers, so a
    checkpoint is self-contained. Their shapes are fixed at construction; they are filled in place by
    :meth:`set_cache` (same signature as :meth:`CacheHead.set_cache`, so
    :class:`~tip_adapter_mm.engine.BuildCacheHook` fills either head) or :meth:`set_support`.

    Loading a state dict (``load_from``, ``tools/test.py CONFIG CHECKPOINT``):

    * adapter parameters for another feature size D (e.g. the official RN50 file, D = 1024, into a ViT-B/16
      config, D = 512): ``ValueError`` naming both shapes;
    * a checkpoint without the cache buffers (e.g. a converted official weights file): the adapter parameters
      load and the head keeps its own cache (``cache_ready`` stays False on a fresh head, so the cache hook
      builds the cache);
    * cache buffers for another number of classes C (cross-dataset transfer: the adapter trained on one
      dataset is applied to another dataset's classes): the buffers are skipped and the adapter parameters
      load; the head keeps its own cache and ``cache_ready`` (False on a fresh head, so the cache is rebuilt
      for the new classes);
    * cache buffers for the same C but another shot count K or feature size D: ``ValueError`` naming both
      shapes (to apply the adapter with another K, strip the buffers with ``tools/convert_meta_adapter.py``).

    Args:
        num_classes (int): C.
        feat_dim (int): D, the CLIP embedding size.
        num_shots (int): K, support features per class. 0 leaves only the text token, so the head is then
            zero-shot CLIP (ŵ = w).
        num_heads (int): attention heads. Defaults to 1, the official (and only working) setting; more heads
            split q, k and the tokens into D / H chunks (not in the official code).
        logit_scale (float): Defaults to 100 as in the official code.
        base_classes (list[int] | list[str] | str, optional): the base classes of a base/novel protocol, as a
            class spec (:mod:`tip_adapter_mm.datasets.base_novel`): indices, class names, or
            ``'meta_adapter/<dataset>'`` for the published split. Stored as the ``base_mask`` buffer (names are
            matched when the dataset's class names are known: :meth:`set_class_names`); training queries come
            from these classes only.
        loss_classes (str): 'all' (official: the softmax runs over every class, novel ones as distractors)
            or 'base' (the softmax runs over the base classes only).
        **kwargs: passed to :class:`mmpretrain.models.heads.ClsHead` (``loss``, ``topk``, ``init_cfg``, ...).
    """

    def __init__(self,
                 num_classes: int,
                 feat_dim: int,
                 num_shots: int = 16,
                 num_heads: int = 1,
                 logit_scale: float = 100.,
                 base_classes=None,
                 loss_classes: str = 'all',
                 **kwargs):
        super().__init__(**kwargs)
        if loss_classes not in ('all', 'base'):
            raise ValueError(f"loss_classes must be 'all' (official) or 'base', got {loss_classes!r}")
        check_head_sizes('MetaAdapterHead', num_classes, feat_dim, num_shots)
        if not isinstance(num_heads, int) or num_heads < 1 or feat_dim % num_heads:
            raise ValueError(f'num_heads must be a positive divisor of feat_dim={feat_dim}, got {num_heads!r}')
        self.num_classes = num_classes
        self.feat_dim = feat_dim
        self.num_shots = num_shots
        self.num_heads = num_heads
        self.logit_scale = logit_scale
        self.q_proj = nn.Linear(feat_dim, feat_dim, bias=False)
        self.k_proj = nn.Linear(feat_dim, feat_dim, bias=False)
        self.alpha_proj = nn.Linear(feat_dim, 1, bias=True)
        self.reset_parameters()
        self.register_buffer('clip_weights', torch.zeros(num_classes, feat_dim))
        self.register_buffer('support', torch.zeros(num_classes, num_shots, feat_dim))
        self.register_buffer('cache_ready', torch.tensor(False))
        # the base classes of a base/novel protocol (all False: no split); in the state dict, so a checkpoint
        # reports base and novel accuracy with the split it was trained with
        self.register_buffer('base_mask', torch.zeros(num_classes, dtype=torch.bool))
        self.base_classes = base_classes  # the spec; names are matched by set_class_names
        if base_classes is not None and not needs_names(base_classes):
            self.base_mask[torch.tensor(resolve_classes(base_classes, num_classes, what='base_classes'))] = True
        self.loss_classes = loss_classes

    @torch.no_grad()
    def set_class_names(self, classnames: Sequence[str]):
        """Match a ``base_classes`` spec of class names against the dataset's names (in label order)."""
        if self.base_classes is None or not needs_names(self.base_classes):
            return
        index = resolve_classes(self.base_classes, self.num_classes, classnames, what='model.head.base_classes')
        self.base_mask.zero_()
        self.base_mask[torch.tensor(index)] = True

    @torch.no_grad()
    def reset_parameters(self):
        """The official initialisation: xavier-uniform weights, gate bias 1 (gate ≈ sigmoid(1) = 0.731)."""
        nn.init.xavier_uniform_(self.q_proj.weight)
        nn.init.xavier_uniform_(self.k_proj.weight)
        nn.init.xavier_uniform_(self.alpha_proj.weight)
        nn.init.constant_(self.alpha_proj.bias, 1)

    @property
    def cache_size(self) -> int:
        """N = C * K, the number of support features :meth:`set_cache` expects."""
        return self.num_classes * self.num_shots

    def _check_shape(self, name: str, value: torch.Tensor, expected: tuple):
        if tuple(value.shape) != tuple(expected):
            raise ValueError(f'{name} of shape {tuple(value.shape)} does not fit the head, which expects '
                             f'{tuple(expected)} (num_classes={self.num_classes}, num_shots={self.num_shots}, '
                             f'feat_dim={self.feat_dim})')

    @torch.no_grad()
    def set_cache(self, clip_weights: torch.Tensor, cache_keys: Optional[torch.Tensor] = None,
                  cache_labels: Optional[torch.Tensor] = None):
        """Fill the text weights and the support cache in place from a flat, labelled cache.

        The supports are stacked by label explicitly (a stable sort, so the order within a class is kept): the
        cache need not be grouped by class, but every class must have exactly K entries.

        Args:
            clip_weights (Tensor): text weights, [C, D].
            cache_keys (Tensor, optional): normalised support features, [C * K, D]. None for K = 0.
            cache_labels (Tensor, optional): their int64 class indices, [C * K]. None for K = 0.
        """
        n = self.cache_size
        cache_keys = self.support.new_zeros(0, self.feat_dim) if cache_keys is None else cache_keys
        cache_labels = torch.zeros(0, dtype=torch.long, device=self.support.device) \
            if cache_labels is None else cache_labels
        self._check_shape('clip_weights', clip_weights, (self.num_classes, self.feat_dim))
        self._check_shape('cache_keys', cache_keys, (n, self.feat_dim))
        self._check_shape('cache_labels', cache_labels, (n,))
        if n:
            counts = check_cache_labels(cache_labels, self.num_classes)
            wrong = (counts != self.num_shots).nonzero().flatten()
            if wrong.numel():
                c = int(wrong[0])
                raise ValueError(f'class {c} has {int(counts[c])} cache entries but the head expects exactly '
                                 f'num_shots={self.num_shots} per class ({wrong.numel()} classes do not have '
                                 f'{self.num_shots})')
            order = torch.sort(cache_labels, stable=True).indices
            support = cache_keys[order].reshape(self.num_classes, self.num_shots, self.feat_dim)
        else:
            support = self.support
        self.set_support(clip_weights, support)

    @torch.no_grad()
    def set_support(self, clip_weights: torch.Tensor, support: torch.Tensor):
        """Fill the text weights [C, D] and the support cache [C, K, D] (class c's supports in row c)."""
        self._check_shape('clip_weights', clip_weights, (self.num_classes, self.feat_dim))
        self._check_shape('support', support, (self.num_classes, self.num_shots, self.feat_dim))
        self.clip_weights.copy_(clip_weights)
        self.support.copy_(support)
        self.cache_ready.fill_(True)

    def refined_weights(self) -> torch.Tensor:
        """ŵ, the text weights refined by the adapter over the support cache, [C, D].

        Differentiable with respect to the four adapter parameters. Without gradients (evaluation,
        inference) it is computed once and reused until any of its inputs changes (an optimiser step, a
        loaded checkpoint, a new cache, a dtype change), so testing batch by batch or one image at a time
        costs a matrix product per batch.
        """
        inputs = (self.clip_weights, self.support, self.q_proj.weight, self.k_proj.weight, self.alpha_proj.weight,
                  self.alpha_proj.bias)
        if torch.is_grad_enabled():
            self._refined = None
            return meta_adapter_weights(*inputs, self.num_heads)
        key = tuple((t.data_ptr(), t._version, t.dtype, t.device) for t in inputs)
        cached = getattr(self, '_refined', None)
        if cached is None or cached[0] != key:
            cached = (key, meta_adapter_weights(*inputs, self.num_heads))
            self._refined = cached
        return cached[1]

    def pre_logits(self, feats: Tuple[torch.Tensor]) -> torch.Tensor:
        """The L2-normalised image feature, in the head's dtype (fp16 while training in official_fp16)."""
        return l2_normalize(feats[-1].float()).to(self.clip_weights.dtype)

    def forward(self, feats: Tuple[torch.Tensor]) -> torch.Tensor:
        return self.logits(self.pre_logits(feats))

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """Meta-Adapter logits ``logit_scale f ŵᵀ`` of already normalised features [M, D]."""
        return meta_adapter_logits(features.to(self.clip_weights.dtype), self.refined_weights(), self.logit_scale)

    def loss(self, feats: Tuple[torch.Tensor], data_samples, **kwargs) -> dict:
        """Cross-entropy over all classes (official: novel classes are distractors) or the base classes."""
        score = self(feats)
        target = torch.cat([s.gt_label for s in data_samples]).to(score.device)
        if self.loss_classes == 'base' and bool(self.base_mask.any()):
            index = self.base_mask.nonzero().flatten()
            remap = torch.full((self.num_classes, ), -1, dtype=torch.long, device=score.device)
            remap[index] = torch.arange(len(index), device=score.device)
            score, target = score[:, index], remap[target]
            if bool((target < 0).any()):
                raise ValueError('loss_classes=base, but a training query belongs to a novel class')
        return dict(loss=self.loss_module(score, target, avg_factor=score.size(0), **kwargs))

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        if prefix + 'base_mask' not in state_dict:  # checkpoints of adapters trained without a split
            state_dict = dict(state_dict, **{prefix + 'base_mask': self.base_mask})
        # The children (q_proj, ...) load their own parameters after this call; check their shapes here,
        # because mmengine's non-strict loading would only warn about a size mismatch.
        d = self.feat_dim
        expected = {'q_proj.weight': (d, d), 'k_proj.weight': (d, d), 'alpha_proj.weight': (1, d),
                    'alpha_proj.bias': (1,)}
        own = {k[len(prefix):] for k in state_dict if k.startswith(prefix)}
        if own:
            missing = sorted(set(expected) - own)
            cache = [name for name in CACHE_BUFFERS if name in own]
            unexpected = sorted(own - set(expected) - set(CACHE_BUFFERS) - {'base_mask'})
            if missing or unexpected or 0 < len(cache) < len(CACHE_BUFFERS):
                raise ValueError(
                    f'checkpoint holds a head state that is not a MetaAdapterHead\'s: missing adapter parameters '
                    f'{missing}, unexpected {unexpected}, cache buffers {cache} of {list(CACHE_BUFFERS)}; it was '
                    'made by another method (a Tip-Adapter checkpoint?) or is incomplete, and would silently '
                    'evaluate an untrained adapter')
        for name, shape in expected.items():
            key = prefix + name
            if key in state_dict and tuple(state_dict[key].shape) != shape:
                raise ValueError(
                    f'checkpoint {name} has shape {tuple(state_dict[key].shape)} but the config builds {shape} '
                    f'(feat_dim={d}): the adapter was trained for another backbone (feature size)')
        present = [name for name in CACHE_BUFFERS if prefix + name in state_dict]
        skip = False
        if 'clip_weights' in present or 'support' in present:
            skip = self._cache_is_for_other_classes(state_dict, prefix)
        if skip or not present:
            # cross-dataset transfer, or an adapter-only checkpoint: keep this head's cache (not ready on a
            # fresh head) and do not report the buffers as missing
            state_dict = {k: v for k, v in state_dict.items()
                          if k.startswith(prefix) and k[len(prefix):] not in CACHE_BUFFERS + ('base_mask', )}
            super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, [], unexpected_keys,
                                          error_msgs)
            # the head's only direct tensors are the cache buffers, so no other key of its own is missing
            return
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)
        if len(present) < len(CACHE_BUFFERS):  # a partial cache cannot be trusted
            self.cache_ready.fill_(False)

    def _cache_is_for_other_classes(self, state_dict, prefix) -> bool:
        """True if the checkpoint's cache buffers are for another class count (raise on other mismatches)."""
        c, k, d = self.num_classes, self.num_shots, self.feat_dim
        shapes = {name: tuple(state_dict[prefix + name].shape) for name in ('clip_weights', 'support')
                  if prefix + name in state_dict}
        for name, shape in shapes.items():
            if len(shape) != (2 if name == 'clip_weights' else 3) or shape[-1] != d:
                raise ValueError(
                    f'checkpoint {name} has shape {shape} but the config builds '
                    f'{tuple(getattr(self, name).shape)} (feat_dim={d}): it was made for another backbone '
                    '(feature size)')
        classes = {shape[0] for shape in shapes.values()}
        if len(classes) > 1:
            raise ValueError(f'checkpoint clip_weights {shapes["clip_weights"]} and support {shapes["support"]} '
                             'disagree on the number of classes: the checkpoint is corrupt')
        if classes.pop() != c:
            return True
        if 'support' in shapes and shapes['support'] != (c, k, d):
            raise ValueError(
                f'checkpoint support has shape {shapes["support"]} but the config builds {(c, k, d)} '
                f'(num_classes={c}, num_shots={k}, feat_dim={d}): the support cache was built with '
                f'{shapes["support"][1]} shots per class; set model.head.num_shots={shapes["support"][1]}, or '
                'strip the cache with tools/convert_meta_adapter.py to apply the adapter with another K')
        return False
