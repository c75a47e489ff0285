from collections import Counter
from typing import Optional, Sequence, Tuple

import torch
import torch.nn as nn
from mmengine.dist import get_world_size
from mmpretrain.models.heads import ClsHead
from mmpretrain.registry import MODELS

from ..functional import check_cache_labels, l2_normalize, tip_logits


def check_head_sizes(head: str, num_classes, feat_dim, num_shots):
    """Raise a clear error for a head's sizes; None / 'auto' (the data's class count, the backbone's feature size)
    are filled in by the project's runner before the model is built, never by the head."""
    unfilled = [f'{name}={value!r}' for name, value in (('num_classes', num_classes), ('feat_dim', feat_dim))
                if value is None or value == 'auto']
    if unfilled:
        raise ValueError(f"{head}: {', '.join(unfilled)} is filled in from the data / the backbone by the project's "
                         "runner (runner_type='mmpretrain.FewShotRunner', which the project's tools, mmpretrain's "
                         'tools and mim build); a plain Runner.from_cfg needs the value set in the config')
    if num_classes < 1 or feat_dim < 1 or num_shots < 0:
        raise ValueError(f'{head} needs num_classes >= 1, feat_dim >= 1 and num_shots >= 0, got '
                         f'{num_classes}, {feat_dim} and {num_shots}')


def check_train_split(labels: Sequence[int], num_classes: int, num_shots: int, exact: bool = False,
                      split_shots: Optional[int] = None, classnames: Optional[Sequence[str]] = None) -> None:
    """Raise a clear ``ValueError`` unless a train split with these labels fills the cache of a head of
    ``num_classes`` x ``num_shots``: every class with 1 to K images (exactly K when ``exact``).

    The check of :class:`~tip_adapter_mm.engine.BuildCacheHook` and of the runner's preflight: a head whose
    class has ``accepts_short_classes`` (:class:`CacheHead`) takes fewer than K images of a class (a
    dataset's ``short_classes='keep_all'``); the others (Meta-Adapter's) need exactly K (``exact``).

    Args:
        labels (sequence of int): the label of every train image.
        num_classes (int): C of the head.
        num_shots (int): K of the head (> 0).
        exact (bool): require exactly K images per class. Defaults to False.
        split_shots (int, optional): the dataset's ``num_shots``, which must then be K.
        classnames (sequence of str, optional): names for the messages.
    """
    def name(label: int) -> str:
        return f"'{classnames[label]}' (label {label})" if classnames and label < len(classnames) else \
            f'label {label}'

    counts = Counter(int(label) for label in labels)
    size = num_classes * num_shots
    largest = max(counts.values(), default=0)
    if (split_shots is not None and split_shots != num_shots) or largest > num_shots:
        raise ValueError(
            f'the train split has {len(labels)} images ({largest} in a class) but the head holds num_classes x '
            f'num_shots = {num_classes} x {num_shots} = {size} cache entries: set model.head.num_shots and '
            'train_dataloader.dataset.num_shots to the same K')
    absent = [label for label in range(num_classes) if not counts[label]]
    if absent:
        raise ValueError(f'class {name(absent[0])} has no image in the train split ({len(absent)} classes have '
                         'none): every class needs at least one cache image')
    short = [label for label in range(num_classes) if counts[label] < num_shots]
    if exact and short:
        raise ValueError(
            f'class {name(short[0])} has {counts[short[0]]} train images, fewer than num_shots={num_shots} '
            f'({len(short)} classes have fewer), and this head needs exactly {num_shots} per class: set '
            "short_classes='replace' in the train dataset (sample with replacement, as Tip-Adapter), or lower "
            'num_shots')


@MODELS.register_module()
class CacheHead(ClsHead):
    """Tip-Adapter's classifier: CLIP text weights plus a key-value cache of few-shot image features.

    ``logits = 100 f Wᵀ + alpha exp(-beta (1 - f Kᵀ)) onehot(L)`` (:func:`~tip_adapter_mm.functional.tip_logits`)
    on the L2-normalised backbone feature f. The text weights W, cache keys K, cache labels L, alpha and
    beta are all in the state dict, so a checkpoint is self-contained. The cache is filled by
    :class:`~tip_adapter_mm.engine.BuildCacheHook` through :meth:`set_cache`. With ``num_shots=0`` (or
    ``alpha=0``) the head is the zero-shot CLIP classifier.

    The cache is allocated at construction with N = C x K entries (the runner wraps the model and builds the
    optimizer before any hook fills it), but it may hold any N >= 1 entries in which every class appears:
    e.g. fewer than K images for the classes that have fewer (a dataset's ``short_classes='keep_all'``, as
    CoOp samples). :meth:`set_cache` and checkpoint loading resize the keys and labels in place, keeping the
    tensor objects, so an optimizer built on the trainable keys (``train_keys``) still holds them. A
    multi-process (DDP) run cannot train keys whose size changed after wrapping (its gradient buckets are
    fixed; :meth:`loss` says so): fine-tuning such a cache needs one process, or exactly K entries per class.
    Evaluating it works on any number of processes.

    Args:
        num_classes (int): C.
        feat_dim (int): D, the CLIP embedding size.
        num_shots (int): K, cache entries per class as configured (the allocated N = C * K; a cache with
            fewer images in some classes is smaller). 0 for zero-shot CLIP (no cache).
        alpha (float): residual ratio (initial value; the search overwrites it).
        beta (float): sharpness (initial value; the search overwrites it).
        train_keys (bool): make the cache keys a trainable parameter (Tip-Adapter-F). Defaults to False.
        logit_scale (float): scale of the CLIP term. Defaults to 100 as in the official code.
        **kwargs: passed to :class:`mmpretrain.models.heads.ClsHead` (``loss``, ``topk``, ...).
    """

    #: the cache may hold fewer than K images of a class (:func:`check_train_split`'s ``exact=False``)
    accepts_short_classes = True

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
        check_head_sizes('CacheHead', num_classes, feat_dim, num_shots)
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
        """N, the number of cache entries the head holds (C * K until a cache of another size is set)."""
        return self.cache_keys.shape[0]

    def _settings(self) -> str:
        return f'num_classes={self.num_classes}, num_shots={self.num_shots}, feat_dim={self.feat_dim}'

    @torch.no_grad()
    def _resize_cache(self, n: int):
        """Give the keys and labels ``n`` rows (zeros), in place: the tensor objects are kept.

        Args:
            n (int): the new number of cache entries.
        """
        if n != self.cache_size:
            self.cache_keys.data = self.cache_keys.new_zeros(n, self.feat_dim)
            self.cache_labels.data = self.cache_labels.new_zeros(n)

    def loss(self, feats: Tuple[torch.Tensor], data_samples, **kwargs) -> dict:
        """:meth:`ClsHead.loss`, after checking that trainable keys can be trained in this run.

        DDP fixed the gradient buckets of the trainable keys at their constructed size (C * K) when it wrapped
        the model: keys of another size (a cache with short classes, set or loaded since) cannot be trained on
        more than one process.

        Args:
            feats (tuple[Tensor]): backbone features.
            data_samples (list[DataSample]): with their ``gt_label``.
            **kwargs: passed to :meth:`ClsHead.loss`.
        """
        built = self.num_classes * self.num_shots
        if isinstance(self.cache_keys, nn.Parameter) and self.cache_size != built and get_world_size() > 1:
            raise ValueError(
                f'the cache has {self.cache_size} entries but the head was built for num_classes x num_shots = '
                f'{self.num_classes} x {self.num_shots} = {built}, and trainable keys cannot change size in a '
                'multi-process run (DDP fixed their gradient buckets when it wrapped the model): fine-tune on one '
                "process, or sample exactly num_shots images per class (short_classes='replace' in the train "
                'dataset, as Tip-Adapter)')
        return super().loss(feats, data_samples, **kwargs)

    @torch.no_grad()
    def set_cache(self, clip_weights: torch.Tensor, cache_keys: Optional[torch.Tensor] = None,
                  cache_labels: Optional[torch.Tensor] = None):
        """Fill the text weights and the cache (in place: keeps the tensors seen by DDP and optimizers).

        Args:
            clip_weights (Tensor): text weights, [C, D].
            cache_keys (Tensor, optional): normalised cache features, [N, D]; None (or N = 0) only for a
                zero-shot head (``num_shots=0``).
            cache_labels (Tensor, optional): their integer class indices, [N]; every class must appear.
        """
        cache_keys = self.cache_keys.new_zeros(0, self.feat_dim) if cache_keys is None else cache_keys
        cache_labels = self.cache_labels.new_zeros(0) if cache_labels is None else cache_labels
        n = cache_keys.shape[0] if cache_keys.dim() == 2 else -1
        for name, value, expected, shown in (
                ('clip_weights', clip_weights, (self.num_classes, self.feat_dim),
                 f'({self.num_classes}, {self.feat_dim})'),
                ('cache_keys', cache_keys, (n, self.feat_dim), f'(N, {self.feat_dim})'),
                ('cache_labels', cache_labels, (n, ), '(N,), N the number of keys')):
            if tuple(value.shape) != expected:
                raise ValueError(f'{name} of shape {tuple(value.shape)} does not fit the head, which expects '
                                 f'{shown} ({self._settings()})')
        if (n == 0) != (self.num_shots == 0):
            raise ValueError(f'a cache of {n} entries does not fit the head ({self._settings()}): num_shots=0 is '
                             'zero-shot CLIP, without a cache; any other head needs at least one entry per class')
        if n:
            absent = (check_cache_labels(cache_labels, self.num_classes) == 0).nonzero().flatten()
            if absent.numel():
                raise ValueError(f'the cache has no entry for the classes {absent[:10].tolist()} ({absent.numel()} '
                                 'classes in all): every class needs at least one cache image')
        self._resize_cache(n)
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
        """The L2-normalised image feature, in the head's dtype (fp16 while training in official_fp16)."""
        return l2_normalize(feats[-1].float()).to(self.clip_weights.dtype)

    def forward(self, feats: Tuple[torch.Tensor]) -> torch.Tensor:
        return self.logits(self.pre_logits(feats))

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """Tip-Adapter logits of already normalised features [M, D]."""
        return tip_logits(features.to(self.clip_weights.dtype), self.clip_weights, self.cache_keys, self.cache_labels,
                          self.alpha, self.beta, self.logit_scale)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        own = {k[len(prefix):] for k in state_dict if k.startswith(prefix)}
        expected = {name for name, _ in self.named_parameters()} | {name for name, _ in self.named_buffers()}
        clip_key, keys_key, labels_key = (prefix + name for name in ('clip_weights', 'cache_keys', 'cache_labels'))
        if clip_key in state_dict and tuple(state_dict[clip_key].shape) != tuple(self.clip_weights.shape):
            raise ValueError(self._mismatch('clip_weights', state_dict[clip_key].shape, self.clip_weights.shape))
        if keys_key in state_dict:
            shape = tuple(state_dict[keys_key].shape)
            configured = (self.num_classes * self.num_shots, self.feat_dim)
            if len(shape) != 2 or shape[1] != self.feat_dim or (shape[0] == 0) != (self.num_shots == 0):
                raise ValueError(self._mismatch('cache_keys', shape, configured))
            labels = tuple(state_dict[labels_key].shape) if labels_key in state_dict else None
            if labels is not None and labels != shape[:1]:
                raise ValueError(self._mismatch('cache_keys', shape, configured, f'its head.cache_labels has shape '
                                                f'{labels}, not one label per key; the checkpoint is damaged'))
            if labels is not None and own == expected:
                self._resize_cache(shape[0])  # the checkpoint's cache size (e.g. fewer images in short classes)
        if own and own != expected:
            raise ValueError(
                f'checkpoint holds a head state that is not a CacheHead\'s: missing {sorted(expected - own)}, '
                f'unexpected {sorted(own - expected)}; it was made by another method (a Meta-Adapter '
                'checkpoint?) or is incomplete, and would silently run without its cache')
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    def _mismatch(self, name: str, shape, configured,
                  why: str = 'the checkpoint was made for another dataset, shot count or backbone') -> str:
        return (f'checkpoint holds head.{name} of shape {tuple(shape)} but the config builds {tuple(configured)} '
                f'({self._settings()}): {why}')
