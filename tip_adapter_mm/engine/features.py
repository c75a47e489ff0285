"""Encoding datasets into features: each (image, view) once, identically on any number of processes.

Augmented view v of image x with seed s is seeded by :func:`tip_adapter_mm.features.view_seed` (a function of
(s, v, x's path relative to the data root) only), so the features of an image never depend on the few-shot
sample it is in, its position in the dataset, the number of workers, the rank or the world size, and every
view differs (mmengine's worker seeding has no epoch term and would replay the same augmentation in every pass).

With a feature store (the config's ``feature_store``, :func:`open_namespace`) only the entries the store lacks
are encoded: the missing images are split across ranks, each rank writes its shards into the one store, and
every rank then reads the whole split from it. Without one, each rank encodes a strided shard and the shards
are gathered back into dataset order. Both paths give the same features.
"""
import copy
import os.path as osp
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from mmengine.dataset import pseudo_collate
from mmengine.dist import all_gather, all_reduce, barrier, get_dist_info, is_main_process
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from torch.utils.data import DataLoader, Dataset

from ..features import DEFAULT_ROOT, Entry, FeatureStore, ItemId, Namespace, view_seed
from ..utils.progress import progress_bar
from ..utils.rng import seeded_rng

#: the keys of the config's ``feature_store`` dict
STORE_KEYS = {'root': 'the store folder (default data/features)',
              'mode': "how an image is identified: 'stat' (path, size, mtime; default) or 'content' (sha256)",
              'enabled': 'False: read and write nothing (the ids and view seeds stay those of mode)'}
ITEM_MODES = ('stat', 'content')


class AugmentedViews(Dataset):
    """The items of ``dataset`` at the given indices, each loaded under its own seed.

    Args:
        dataset: an mmengine dataset whose pipeline draws its randomness from Python/NumPy/torch RNGs.
        entries (Sequence[tuple]): ``(index, seed)`` pairs; item k is ``dataset[index]`` loaded under
            ``seeded_rng(seed)`` (no seeding when the seed is None).
    """

    def __init__(self, dataset, entries: Sequence[Tuple[int, Optional[int]]]):
        self.dataset = dataset
        self.entries = list(entries)

    def __len__(self):
        return len(self.entries)

    def __getitem__(self, k):
        index, seed = self.entries[k]
        if seed is None:
            return self.dataset[index]
        with seeded_rng(seed):
            return self.dataset[index]


def unwrap(model):
    return model.module if is_model_wrapper(model) else model


def gather_in_order(local: torch.Tensor, total: int) -> torch.Tensor:
    """Rank r holds items r, r + W, r + 2W, ...; return all ``total`` items in order on every rank."""
    rank, world_size = get_dist_info()
    if world_size == 1:
        return local[:total]
    per_rank = -(-total // world_size)
    padded = local.new_zeros((per_rank, ) + tuple(local.shape[1:]))
    padded[:local.shape[0]] = local
    parts = all_gather(padded)
    return torch.stack(parts, dim=1).flatten(0, 1)[:total]


# -- what identifies the items and the encoder ------------------------------------------------------------------

def check_store_cfg(value) -> Optional[dict]:
    """Validate the config's ``feature_store`` (None or a dict of :data:`STORE_KEYS`); return it completed.

    Raises:
        ValueError: naming ``feature_store`` and the key or value that is wrong.
    """
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ValueError(f'feature_store must be None (no store) or a dict with keys {sorted(STORE_KEYS)}, '
                         f'got {value!r}')
    unknown = sorted(set(value) - set(STORE_KEYS))
    if unknown:
        raise ValueError(f'feature_store has unknown key(s) {unknown}; the keys are: '
                         + '; '.join(f'{k}: {v}' for k, v in STORE_KEYS.items()))
    root = value.get('root', DEFAULT_ROOT)
    if not isinstance(root, str) or not root:
        raise ValueError(f'feature_store.root must be a folder path, got {root!r}')
    if osp.exists(root) and not osp.isdir(root):
        raise ValueError(f"feature_store.root '{root}' exists and is not a folder")
    mode = value.get('mode', 'stat')
    if mode not in ITEM_MODES:
        raise ValueError(f'feature_store.mode must be one of {ITEM_MODES}, got {mode!r}')
    enabled = value.get('enabled', True)
    if not isinstance(enabled, bool):
        raise ValueError(f'feature_store.enabled must be True or False, got {enabled!r}')
    return dict(root=root, mode=mode, enabled=enabled)


def dataset_items(infos: Sequence[Mapping], data_root: Optional[str], mode: str = 'stat',
                  store: Optional[FeatureStore] = None) -> Tuple[List[ItemId], bool]:
    """The :class:`ItemId` of every item of a dataset (its ``get_data_info`` dicts) and whether they identify
    image files.

    Items with an ``img_path`` are identified by their file, relative to the dataset's ``data_root`` when
    inside it (:meth:`ItemId.from_file`; in ``'content'`` mode by the sha256 of the bytes, cached in the
    store's ``hashes.json``). Their views are seeded from that id, so a run gives the same features with the
    store or without it. Items without a file (in-memory images) get ids that only seed their views and
    cannot be stored.
    """
    if not all(info.get('img_path') for info in infos):
        return [ItemId(f'index:{i}') for i in range(len(infos))], False
    root = osp.abspath(data_root or osp.sep)
    hashes = store.hashes if store is not None else None
    items = []
    try:
        for info in infos:
            path = osp.abspath(info['img_path'])
            base = root if path.startswith(root.rstrip(osp.sep) + osp.sep) else osp.sep
            items.append(ItemId.from_file(base, path, mode, hashes))
    finally:
        if hashes is not None:
            hashes.flush()
    return items, True


def backbone_spec(model) -> Optional[dict]:
    """The backbone identity a feature store keys on (None for a backbone that is not an open_clip CLIP)."""
    backbone = getattr(unwrap(model), 'backbone', None)
    if backbone is None or not hasattr(backbone, 'model_name') or not hasattr(backbone, 'pretrained'):
        return None
    return dict(model_name=backbone.model_name, pretrained=backbone.pretrained,
                precision=getattr(backbone, 'precision', 'fp32'))


def open_namespace(store_cfg: Optional[dict], model, pipeline, views: int, seed: int,
                   extra: Optional[Mapping] = None, desc: str = 'features') -> Optional[Namespace]:
    """The store namespace of ``model`` x ``pipeline`` x ``seed``; None when the store is off or the
    features cannot be keyed (random CLIP weights, a backbone that is not a CLIPBackbone, no pipeline)."""
    if not store_cfg or not store_cfg['enabled']:
        return None
    spec = backbone_spec(model)
    why = None
    if spec is None:
        why = 'the backbone is not a CLIPBackbone'
    elif not spec['pretrained']:
        why = 'random CLIP weights (pretrained=None) have no stable identity'
    elif not isinstance(pipeline, (list, tuple)):
        why = 'the dataset config has no pipeline list'
    if why:
        print_log(f'{desc}: feature store not used ({why})', logger='current')
        return None
    store = FeatureStore(store_cfg['root'])
    return store.namespace(spec, pipeline, views=views, seed=seed, extra=extra)


# -- encoding ---------------------------------------------------------------------------------------------------

def _forward(model, batch) -> torch.Tensor:
    data = model.data_preprocessor(batch, False)
    return model.extract_feat(data['inputs'])[-1].float().cpu()


class _Progress:
    """The stage's progress bar (:func:`tip_adapter_mm.utils.progress.progress_bar`: rate and ETA, main process
    only) and one log line, for more than 0 items."""

    def __init__(self, total: int, desc: str):
        show = total > 0 and is_main_process()
        if show:
            print_log(f'encoding {desc}: {total} image view(s)', logger='current')
        self.bar = progress_bar(total=total, desc=f'encoding {desc}', unit='view') if show else None

    def update(self, n: int):
        if self.bar is not None:
            self.bar.update(n)

    def close(self):
        if self.bar is not None:
            self.bar.close()


class _StoreEncoder:
    """``encode_fn`` of :meth:`Namespace.encode_missing` that decodes the batches it expects ahead, with
    ``num_workers`` loader workers. A batch that differs from the expected one (another process took some of
    the entries) is decoded here and prefetching stops; the features are the same either way."""

    def __init__(self, model, dataset, index_of: Dict[str, int], expected: List[Entry], batch_size: int,
                 num_workers: int, progress: _Progress):
        self.model, self.dataset, self.index_of, self.progress = model, dataset, index_of, progress
        self.batches = [[(e.item.key, e.view) for e in expected[i:i + batch_size]]
                        for i in range(0, len(expected), batch_size)]
        self.pos = 0
        self.loader = None
        if expected:
            views = AugmentedViews(dataset, [(index_of[e.item.key], e.seed) for e in expected])
            self.loader = iter(DataLoader(views, batch_size=batch_size, num_workers=num_workers,
                                          collate_fn=pseudo_collate, shuffle=False))
        self.encoded = 0

    def __call__(self, entries: List[Entry]) -> torch.Tensor:
        keys = [(e.item.key, e.view) for e in entries]
        if self.loader is not None and self.pos < len(self.batches) and self.batches[self.pos] == keys:
            self.pos += 1
            batch = next(self.loader)
        else:
            self.loader = None
            views = AugmentedViews(self.dataset, [(self.index_of[e.item.key], e.seed) for e in entries])
            batch = pseudo_collate([views[k] for k in range(len(views))])
        feats = _forward(self.model, batch)
        self.encoded += len(entries)
        self.progress.update(len(entries))
        return feats


def _missing_entries(ns: Namespace, items: List[ItemId]) -> List[Entry]:
    seen, out = set(), []
    for v, i in ns.missing(items):
        key = (items[i].key, v)
        if key not in seen:
            seen.add(key)
            out.append(Entry(items[i], v, ns.view_seed(items[i], v)))
    return out


def _encode_with_store(model, dataset, ns: Namespace, items: List[ItemId], batch_size: int, num_workers: int,
                       desc: str) -> Tuple[torch.Tensor, int]:
    rank, world_size = get_dist_info()
    if world_size > 1:
        barrier()  # every rank sees the same missing entries, so the split below is the same everywhere
    index_of = {}
    for i, item in enumerate(items):
        index_of.setdefault(item.key, i)
    missing = _missing_entries(ns, items)
    counts = torch.tensor([len(missing)], dtype=torch.long)
    encoded = 0
    if missing:
        missing_items = list({e.item.key: e.item for e in missing}.values())
        mine = missing_items[rank::world_size]  # the missing images are split across ranks
        expected = _missing_entries(ns, mine)
        progress = _Progress(len(expected), f'{desc} into {ns.store.root}')
        encoder = _StoreEncoder(model, dataset, index_of, expected, batch_size, num_workers, progress)
        ns.encode_missing(mine, encoder, batch_size=batch_size)
        progress.close()
        encoded += encoder.encoded
    if world_size > 1:
        barrier()  # every rank's shards are written
    # read everything (and encode what another rank's store on an unshared filesystem does not hold)
    rest = _missing_entries(ns, items)
    encoder = _StoreEncoder(model, dataset, index_of, rest, batch_size, num_workers, _Progress(0, desc))
    feats = ns.encode_missing(items, encoder, batch_size=batch_size).features
    encoded += encoder.encoded
    print_log(f'{desc}: {len(items) * ns.views - int(counts)} of {len(items) * ns.views} image view(s) read from '
              f'the feature store, {int(counts)} encoded', logger='current')
    return feats, encoded


def _encode_direct(model, dataset, items: List[ItemId], num_views: int, seed: int, batch_size: int,
                   num_workers: int, desc: str) -> Tuple[torch.Tensor, int]:
    rank, world_size = get_dist_info()
    entries = [(i, view_seed(seed, v, item)) for v in range(num_views) for i, item in enumerate(items)]
    total = len(entries)
    shard = entries[rank::world_size]
    loader = DataLoader(AugmentedViews(dataset, shard), batch_size=batch_size, num_workers=num_workers,
                        collate_fn=pseudo_collate, shuffle=False)
    progress = _Progress(total, desc)
    local, done = None, 0
    for batch in loader:
        feats = _forward(model, batch)
        if local is None:  # filled in place: the batches are not held a second time by a concatenation
            local = feats.new_empty(len(shard), feats.shape[1])
        local[done:done + len(feats)] = feats
        done += len(feats)
        progress.update(len(feats) * world_size)
    progress.close()
    device = next(model.parameters()).device
    local = local.to(device) if local is not None else torch.zeros(0, _feature_dim(model), device=device)
    feats = gather_in_order(local, total).cpu()
    return feats.view(num_views, len(items), -1), len(shard)


@torch.no_grad()
def extract_features(model, dataset, num_views: int = 1, seed: int = 0, batch_size: int = 64,
                     num_workers: int = 0, desc: str = 'features', store=None, pipeline: Optional[list] = None,
                     extra: Optional[Mapping] = None) -> Tuple[torch.Tensor, torch.Tensor, int]:
    """Raw backbone features of every item (and view) of ``dataset``; each stored entry is encoded once.

    Args:
        model: an mmpretrain classifier (possibly wrapped) with ``data_preprocessor`` and ``extract_feat``.
        dataset: the dataset to encode.
        num_views (int): views per item (augmented by the pipeline under per-(seed, view, image) seeds).
        seed (int): augmentation seed.
        batch_size (int): images per forward pass (and per stored shard).
        num_workers (int): data loading workers.
        desc (str): name used in the log and the progress bar.
        store (dict, optional): the config's ``feature_store`` (``dict(root=..., mode=..., enabled=...)``);
            None or ``enabled=False``: encode everything, store nothing.
        pipeline (list, optional): the dataset's pipeline config (part of the store key); without it the
            store is not used.
        extra (Mapping, optional): anything else that changes a feature (e.g. the data preprocessor config).

    Returns:
        tuple: float32 features [V, N, D] on the CPU, int64 labels [N], and the number of image views this
        call passed through the encoder, summed over processes (0 when the store held everything).
    """
    model = unwrap(model)
    was_training = model.training
    model.eval()
    try:
        infos = [dataset.get_data_info(i) for i in range(len(dataset))]
        store_cfg = check_store_cfg(store)
        ns = open_namespace(store_cfg, model, pipeline, num_views, seed, extra, desc)
        items, files = dataset_items(infos, getattr(dataset, 'data_root', None),
                                     store_cfg['mode'] if store_cfg else 'stat',
                                     ns.store if ns is not None else None)
        if ns is not None and not files:
            print_log(f'{desc}: feature store not used (the items have no image files)', logger='current')
            ns = None
        if ns is not None:
            feats, encoded = _encode_with_store(model, dataset, ns, items, batch_size, num_workers, desc)
        else:
            feats, encoded = _encode_direct(model, dataset, items, num_views, seed, batch_size, num_workers, desc)
    finally:
        model.train(was_training)
    if get_dist_info()[1] > 1:
        count = torch.tensor([encoded], dtype=torch.long, device=next(model.parameters()).device)
        all_reduce(count)
        encoded = int(count.item())
    labels = torch.tensor([int(info['gt_label']) for info in infos], dtype=torch.long)
    return feats.float(), labels, encoded


def _feature_dim(model) -> int:
    head = getattr(model, 'head', None)
    if head is not None and hasattr(head, 'feat_dim'):
        return int(head.feat_dim)
    return int(model.backbone.feat_dim)


# -- what a run encodes -----------------------------------------------------------------------------------------

def encode_dataset(runner, dataset, dataset_cfg: Optional[Mapping], loader_key: str, num_views: int = 1,
                   seed: int = 0, desc: str = 'features', batch_size: Optional[int] = None,
                   num_workers: Optional[int] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """:func:`extract_features` with the run's store (``cfg.feature_store``), loader settings and preprocessor.

    Records the number of image views encoded under ``record['image_forwards'][desc]``.

    Args:
        runner: the runner.
        dataset: the built dataset.
        dataset_cfg (Mapping, optional): its config (its ``pipeline`` is part of the store key).
        loader_key (str): the dataloader whose ``batch_size``/``num_workers`` are used by default.
        num_views, seed, desc: as for :func:`extract_features`.
        batch_size, num_workers (int, optional): override the loader's.
    """
    from .record import get_record, update_record
    loader = runner.cfg.get(loader_key) or {}
    feats, labels, encoded = extract_features(
        runner.model, dataset, num_views=num_views, seed=seed,
        batch_size=batch_size or loader.get('batch_size', 64),
        num_workers=num_workers if num_workers is not None else loader.get('num_workers', 0), desc=desc,
        **store_args(runner.cfg, dataset_cfg))
    forwards = dict(get_record(runner).get('image_forwards', {}))
    forwards[desc] = forwards.get(desc, 0) + encoded
    update_record(runner, image_forwards=forwards)
    return feats, labels


def store_args(cfg, dataset_cfg: Optional[Mapping]) -> dict:
    """The ``store``, ``pipeline`` and ``extra`` arguments of :func:`extract_features` for a dataset of the
    config ``cfg``: what keys its features in the config's feature store (every entry point uses this)."""
    pipeline = dataset_cfg.get('pipeline') if isinstance(dataset_cfg, Mapping) else None
    preprocessor = copy.deepcopy((cfg.get('model') or {}).get('data_preprocessor'))
    if isinstance(preprocessor, Mapping):  # a None value is the default (model builders add some)
        preprocessor = {k: v for k, v in preprocessor.items() if v is not None}
    return dict(store=cfg.get('feature_store'), pipeline=pipeline, extra=dict(data_preprocessor=preprocessor))
