from typing import Optional, Tuple

import torch
import torch.nn as nn
from mmpretrain.models.heads import ClsHead
from mmpretrain.registry import MODELS

from ..functional import l2_normalize, tip_logits


@MODELS.register_module()
class CacheHead(ClsHead):
    """Tip-Adapter's classifier: CLIP text weights plus a key-value cache of few-shot image features.

    ``logits = 100 f Wᵀ + alpha exp(-beta (1 - f Kᵀ)) onehot(L)`` (:func:`~tip_adapter_mm.functional.tip_logits`)
    on the L2-normalised backbone feature f. The text weights W, cache keys K, cache labels L, alpha and
    beta are all in the state dict, so a checkpoint is self-contained. Their shapes are fixed at
    construction (the runner wraps the model and builds the optimizer before any hook fills them); the
    cache is filled in place by :class:`~tip_adapter_mm.engine.BuildCacheHook`. With ``num_shots=0`` (or
    ``alpha=0``) the head is the zero-shot CLIP classifier.

    Args:
        num_classes (int): C.
        feat_dim (int): D, the CLIP embedding size.
        num_shots (int): K, cache entries per class (N = C * K). 0 for zero-shot CLIP.
        alpha (float): residual ratio (initial value; the search overwrites it).
        beta (float): sharpness (initial value; the search overwrites it).
        train_keys (bool): make the cache keys a trainable parameter (Tip-Adapter-F). Defaults to False.
        logit_scale (float): scale of the CLIP term. Defaults to 100 as in the official code.
        **kwargs: passed to :class:`mmpretrain.models.heads.ClsHead` (``loss``, ``topk``, ...).
    """

    def __init__(self,
                 num_classes: int,
                 feat_dim: int,
                 num_shots: int = 16,
                 alpha: float = 1.,
                 beta: float = 1.,
                 train_keys: bool = False,
                 logit_scale: float = 100.,
                 **kwargs):
        super().__init__(**kwargs)
        if num_classes < 1 or feat_dim < 1 or num_shots < 0:
            raise ValueError(f'CacheHead needs num_classes >= 1, feat_dim >= 1 and num_shots >= 0, got '
                             f'{num_classes}, {feat_dim} and {num_shots}')
        self.num_classes = num_classes
        self.feat_dim = feat_dim
        self.num_shots = num_shots
        self.logit_scale = logit_scale
        n = num_classes * num_shots
        self.register_buffer('clip_weights', torch.zeros(num_classes, feat_dim))
        keys = torch.zeros(n, feat_dim)
        if train_keys:
            self.cache_keys = nn.Parameter(keys)
        else:
            self.register_buffer('cache_keys', keys)
        self.register_buffer('cache_labels', torch.zeros(n, dtype=torch.long))
        # float64, so that the searched grid values are stored exactly
        self.register_buffer('alpha', torch.tensor(float(alpha), dtype=torch.float64))
        self.register_buffer('beta', torch.tensor(float(beta), dtype=torch.float64))
        self.register_buffer('cache_ready', torch.tensor(False))

    @property
    def cache_size(self) -> int:
        return self.num_classes * self.num_shots

    @torch.no_grad()
    def set_cache(self, clip_weights: torch.Tensor, cache_keys: Optional[torch.Tensor] = None,
                  cache_labels: Optional[torch.Tensor] = None):
        """Fill the text weights and the cache in place (keeps parameters seen by DDP and optimizers)."""
        cache_keys = self.cache_keys.new_zeros(0, self.feat_dim) if cache_keys is None else cache_keys
        cache_labels = self.cache_labels.new_zeros(0) if cache_labels is None else cache_labels
        for name, value in (('clip_weights', clip_weights), ('cache_keys', cache_keys),
                            ('cache_labels', cache_labels)):
            expected = tuple(getattr(self, name).shape)
            if tuple(value.shape) != expected:
                raise ValueError(f'{name} of shape {tuple(value.shape)} does not fit the head, which expects '
                                 f'{expected} (num_classes={self.num_classes}, num_shots={self.num_shots}, '
                                 f'feat_dim={self.feat_dim})')
        if cache_labels.numel() and (cache_labels.min() < 0 or cache_labels.max() >= self.num_classes):
            raise ValueError(f'cache labels must lie in [0, {self.num_classes}), got '
                             f'[{int(cache_labels.min())}, {int(cache_labels.max())}]')
        self.clip_weights.copy_(clip_weights)
        self.cache_keys.copy_(cache_keys)
        self.cache_labels.copy_(cache_labels)
        self.cache_ready.fill_(True)

    @torch.no_grad()
    def set_hparams(self, alpha: float, beta: float):
        """Set alpha (residual ratio) and beta (sharpness)."""
        self.alpha.fill_(float(alpha))
        self.beta.fill_(float(beta))

    def pre_logits(self, feats: Tuple[torch.Tensor]) -> torch.Tensor:
        """The L2-normalised image feature."""
        return l2_normalize(feats[-1].float())

    def forward(self, feats: Tuple[torch.Tensor]) -> torch.Tensor:
        return self.logits(self.pre_logits(feats))

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """Tip-Adapter logits of already normalised features [M, D]."""
        return tip_logits(features, self.clip_weights, self.cache_keys, self.cache_labels,
                          self.alpha, self.beta, self.logit_scale)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        for name in ('clip_weights', 'cache_keys'):
            key = prefix + name
            if key in state_dict and tuple(state_dict[key].shape) != tuple(getattr(self, name).shape):
                raise ValueError(
                    f'checkpoint holds head.{name} of shape {tuple(state_dict[key].shape)} but the config builds '
                    f'{tuple(getattr(self, name).shape)} (num_classes={self.num_classes}, '
                    f'num_shots={self.num_shots}, feat_dim={self.feat_dim}): the checkpoint was made for '
                    'another dataset, shot count or backbone')
        own = {k[len(prefix):] for k in state_dict if k.startswith(prefix)}
        expected = {name for name, _ in self.named_parameters()} | {name for name, _ in self.named_buffers()}
        if own and own != expected:
            raise ValueError(
                f'checkpoint holds a head state that is not a CacheHead\'s: missing {sorted(expected - own)}, '
                f'unexpected {sorted(own - expected)}; it was made by another method (a Meta-Adapter '
                'checkpoint?) or is incomplete, and would silently run without its cache')
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)
