"""A persistent store of image features: every image (and augmented view) is encoded once.

Layout of a store folder (default ``data/features/``)::

    <root>/
      hashes.json (+ .lock)          sha256 of local weights files (and of images in 'content' mode), by
                                     (path, size, mtime, ctime, inode)
      locks/<key>.lock               the file lock of a namespace (kept by clear(), so waiting processes and
                                     new ones always lock the same file)
      <key>/                         one namespace: sha256 of the canonical identity below
        namespace.json               {"identity": {"format", "backbone", "pipeline", "seed"[, "extra"]}, ...}
        shards/<stem>.safetensors    one tensor "features" [count, D], written by one put (one batch)
        shards/<stem>.json           the shard's index entry: file, sha256, nbytes, count, dim, dtype and the
                                     [item key, view] of every row; written after the shard, so an entry
                                     always describes a complete file
        claims/<id>.json, <id>.lock  the entries a live process is encoding now (its OS file lock on
                                     <id>.lock dies with it)

The namespace key covers everything but the image: the backbone (model name, weights tag or the sha256 of the
weights file, precision), the pipeline (its canonical JSON) and the augmentation seed. An entry is (image key,
view index); the image key is its relative path, size and mtime, or its content hash (:class:`ItemId`). The
number of views is not in any key: view v of image x with seed s is the same entry whether 5 or 10 views are
asked for, and whichever few-shot sample x is in.

Shards are safetensors files (never pickle), written atomically (temporary file, fsync, ``os.replace``) under
the namespace lock; a shard is immutable once its index entry exists. Every read checks the shard's size and
sha256 against its index entry; a corrupt or truncated shard is dropped with a :class:`FeatureStoreWarning`
and its entries are encoded again. Processes that encode the same namespace at the same time split the work
through claims (a claimed batch is skipped by the others, who wait for it), so each entry is encoded and
stored once; the claims of a killed process are recognised (its lock is gone) and its batch is encoded again.

Works on local filesystems (``flock``); not thread-safe (use one :class:`Namespace` per thread).
"""
import hashlib
import json
import logging
import operator
import os
import os.path as osp
import re
import shutil
import socket
import time
import uuid
import warnings
from collections import Counter
from typing import Callable, Dict, List, Mapping, NamedTuple, Optional, Sequence, Set, Tuple, Union

import torch
from filelock import FileLock, Timeout
from safetensors.torch import load as safetensors_load
from safetensors.torch import save as safetensors_save

from ..utils.io import atomic_write_bytes, is_temporary
from .keys import (FORMAT_VERSION, FileHashCache, ItemId, backbone_identity, canonical, canonical_json,
                   pipeline_identity, sha256_text, view_seed)

DEFAULT_ROOT = osp.join('data', 'features')
WRITTEN_BY = 'tip_adapter_mm.features'
HASHES_NAME = 'hashes.json'
LOCKS_DIR = 'locks'
META_NAME = 'namespace.json'
TENSOR_NAME = 'features'
SHARD_EXT = '.safetensors'
MANIFEST_EXT = '.json'
#: how often encode_missing reads back, finds entries lost (a shard corrupt on disk) and encodes them again
MAX_ROUNDS = 3

_KEY_RE = re.compile(r'^[0-9a-f]{64}$')
logger = logging.getLogger(__name__)

EntryKey = Tuple[str, int]  # (item key, view)


class FeatureStoreWarning(RuntimeWarning):
    """A corrupt shard or index entry was found (and dropped: its features are encoded again)."""


class Entry(NamedTuple):
    """One thing to encode: view ``view`` of ``item``, augmented with ``seed`` (None: no augmentation)."""
    item: ItemId
    view: int
    seed: Optional[int]


class Encoded(NamedTuple):
    """What :func:`encode_missing` returns.

    Attributes:
        features (torch.Tensor): [V, N, D], view v of ``items[i]`` at ``[v, i]``.
        encoded (int): entries (image views) this call encoded, i.e. rows passed to ``encode_fn``.
        batches (int): calls of ``encode_fn``.
    """
    features: torch.Tensor
    encoded: int
    batches: int


class _Corrupt(Exception):
    pass


class _Claim:

    def __init__(self, cid: str, lock: FileLock, keys: List[EntryKey]):
        self.cid, self.lock, self.keys, self.released = cid, lock, keys, False


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace('torch.', '')


def _dtype(name: str) -> torch.dtype:
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f'unknown dtype {name!r}')
    return dtype


def _remove(path: str):
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def _json_bytes(obj) -> bytes:
    return (json.dumps(obj, sort_keys=True, ensure_ascii=True) + '\n').encode()


class FeatureStore:
    """A folder of feature shards, shared by runs and processes.

    Args:
        root (str): the folder (created if needed). Defaults to ``data/features``.
        lock_timeout (float): seconds to wait for a namespace's file lock (-1: forever). It is held only
            while a shard is written or the index is checked, never while images are encoded.

    Example::

        store = FeatureStore('data/features')
        ns = store.namespace(dict(model_name='RN50', pretrained='openai'), cfg.test_pipeline)
        items = store.items(data_root, [info['img_path'] for info in data_list])
        feats = ns.encode_missing(items, encode_fn, batch_size=64).features[0]   # [N, D]
    """

    def __init__(self, root: str = DEFAULT_ROOT, lock_timeout: float = 600):
        self.root = osp.abspath(os.fspath(root))
        self.lock_timeout = lock_timeout
        os.makedirs(self.root, exist_ok=True)
        self.hashes = FileHashCache(osp.join(self.root, HASHES_NAME), lock_timeout=lock_timeout)

    def __repr__(self):
        return f'FeatureStore({self.root!r})'

    def namespace(self, backbone: Mapping, pipeline: Sequence, views: int = 1, seed: Optional[int] = None,
                  extra: Optional[Mapping] = None) -> 'Namespace':
        """The namespace of features made by ``backbone`` through ``pipeline`` (the key of all but the image).

        Args:
            backbone (Mapping): ``model_name``, ``pretrained`` (an open_clip tag or a local weights file,
                identified by its content) and ``precision`` (default ``'fp32'``); a ``CLIPBackbone`` config
                works as it is (keys such as ``type``, ``freeze`` or ``cache_dir`` are ignored).
            pipeline (Sequence): the transform configs (a list of dicts) that turn an image file into the
                model input; canonicalised with ``json.dumps(..., sort_keys=True)``.
            views (int): how many views of each image :meth:`Namespace.lookup` and
                :meth:`Namespace.encode_missing` return. Not part of the key: 4 views reuse the first 4 of 10.
            seed (int, optional): the augmentation seed of a random pipeline; None for a deterministic
                pipeline (then ``views`` must be 1).
            extra (Mapping, optional): anything else that changes a feature (e.g. which layer is taken).

        Raises:
            ValueError, TypeError, FileNotFoundError: for an invalid backbone, pipeline, seed or views.
        """
        if seed is not None:
            if isinstance(seed, bool):
                raise TypeError('seed must be an int or None')
            seed = operator.index(seed)
        identity = {'format': FORMAT_VERSION, 'backbone': backbone_identity(backbone, self.hashes),
                    'pipeline': pipeline_identity(pipeline), 'seed': seed}
        if extra:
            identity['extra'] = canonical(extra)
        return Namespace(self, identity, views)

    def item(self, data_root: str, rel_path: str, mode: str = 'stat') -> ItemId:
        """The :class:`ItemId` of one image file (see :meth:`ItemId.from_file`), hashed with this store's cache."""
        return self.items(data_root, [rel_path], mode)[0]

    def items(self, data_root: str, rel_paths: Sequence[str], mode: str = 'stat') -> List[ItemId]:
        """The :class:`ItemId` of each image ``rel_paths[i]`` under ``data_root``.

        Args:
            data_root (str): the dataset root.
            rel_paths (Sequence[str]): image paths relative to ``data_root`` (absolute ones inside it work).
            mode (str): ``'stat'`` (relative path, size and mtime) or ``'content'`` (sha256 of the bytes,
                cached in ``hashes.json`` so an unchanged image is read once).
        """
        try:
            return [ItemId.from_file(data_root, p, mode, self.hashes) for p in rel_paths]
        finally:
            self.hashes.flush()

    def namespaces(self) -> List[dict]:
        """The namespaces in the store: ``{'key', 'identity', 'entries', 'bytes'}`` each."""
        out = []
        for key in self._namespace_keys():
            try:
                with open(osp.join(self.root, key, META_NAME)) as f:
                    identity = json.load(f).get('identity')
            except (OSError, ValueError, AttributeError):
                identity = None
            shards = osp.join(self.root, key, 'shards')
            entries = 0
            for name in (os.listdir(shards) if osp.isdir(shards) else []):
                if name.endswith(MANIFEST_EXT) and not name.startswith('.'):
                    try:
                        with open(osp.join(shards, name)) as f:
                            entries += int(json.load(f)['count'])
                    except (OSError, ValueError, KeyError, TypeError):
                        pass
            out.append({'key': key, 'identity': identity, 'entries': entries,
                        'bytes': _folder_bytes(osp.join(self.root, key))})
        return out

    def size_bytes(self) -> int:
        """Bytes of all files in the store folder."""
        return _folder_bytes(self.root)

    def clear(self, namespace: Union['Namespace', str, None] = None) -> int:
        """Delete the features of one namespace (a :class:`Namespace` or its key), or of all and the hash cache.

        Only what the store wrote is removed (namespace folders and ``hashes.json``); other files in the root
        stay. Each namespace is removed under its lock; a process still encoding into it writes its next
        shards into a fresh namespace folder.

        Returns:
            int: the number of namespaces removed.
        """
        if namespace is None:
            keys = self._namespace_keys()
        else:
            key = namespace.key if isinstance(namespace, Namespace) else str(namespace)
            if not _KEY_RE.match(key):
                raise ValueError(f'not a namespace key: {key!r}')
            keys = [key]
        removed = 0
        for key in keys:
            path = osp.join(self.root, key)
            if not osp.isdir(path):
                continue
            with FileLock(osp.join(self.root, LOCKS_DIR, key + '.lock'), timeout=self.lock_timeout):
                shutil.rmtree(path, ignore_errors=True)
            removed += 1
        if namespace is None:
            with FileLock(self.hashes.path + '.lock', timeout=self.lock_timeout):
                _remove(self.hashes.path)
            self.hashes.forget()
        return removed

    def _namespace_keys(self) -> List[str]:
        try:
            names = sorted(os.listdir(self.root))
        except FileNotFoundError:
            return []
        return [n for n in names if _KEY_RE.match(n) and osp.isdir(osp.join(self.root, n))
                and (osp.exists(osp.join(self.root, n, META_NAME)) or osp.isdir(osp.join(self.root, n, 'shards')))]


def _folder_bytes(folder: str) -> int:
    total = 0
    for dirpath, _, filenames in os.walk(folder):
        for name in filenames:
            try:
                total += os.lstat(osp.join(dirpath, name)).st_size
            except FileNotFoundError:
                pass
    return total


class Namespace:
    """The features of one backbone + pipeline + seed: a map (image, view) -> feature [D].

    Made by :meth:`FeatureStore.namespace`. Results are [V, N, D] tensors, view v of ``items[i]`` at
    ``[v, i]`` (V = ``views``; a deterministic namespace has V = 1), as ``extract_features`` returns.

    Attributes:
        key (str): sha256 hex of the canonical identity; the namespace's folder name.
        identity (dict): the backbone, pipeline, seed (and extra) the key is made of.
        views (int): views per image returned by :meth:`lookup` and :meth:`encode_missing`.
        seed (int or None): the augmentation seed.
        path (str): the namespace folder.
    """

    def __init__(self, store: FeatureStore, identity: dict, views: int = 1):
        views = operator.index(views)
        if views < 1:
            raise ValueError(f'views must be >= 1, got {views}')
        if identity['seed'] is None and views != 1:
            raise ValueError('a namespace without an augmentation seed is deterministic: views must be 1')
        self.store = store
        self.identity = identity
        self.views = views
        self.seed = identity['seed']
        self.key = sha256_text(canonical_json(identity))
        self.path = osp.join(store.root, self.key)
        self._shards = osp.join(self.path, 'shards')
        self._claims = osp.join(self.path, 'claims')
        self._lock = FileLock(osp.join(store.root, LOCKS_DIR, self.key + '.lock'), timeout=store.lock_timeout)
        self._manifests: Dict[str, dict] = {}
        self._index: Dict[EntryKey, Tuple[str, int]] = {}
        self._check_meta()

    def __repr__(self):
        return f'Namespace({self.key[:12]}, views={self.views}, seed={self.seed}, store={self.store.root!r})'

    def __len__(self) -> int:
        """The number of stored entries (image views)."""
        self.refresh()
        return len(self._index)

    # -- reading ------------------------------------------------------------------------------------------

    def view_seed(self, item: ItemId, view: int) -> Optional[int]:
        """The augmentation seed of view ``view`` of ``item`` (see :func:`view_seed`)."""
        return view_seed(self.seed, view, item)

    def entries(self, items: Sequence[ItemId]) -> List[Entry]:
        """Every (item, view, seed) of ``items``, view-major (all items of view 0 first)."""
        return [Entry(item, v, self.view_seed(item, v)) for v in range(self.views) for item in items]

    def missing(self, items: Sequence[ItemId]) -> List[Tuple[int, int]]:
        """The (view, index) of each entry of ``items`` that is not stored, from the index alone.

        Shards are not read here: a corrupt one is found by :meth:`lookup` and :meth:`encode_missing`.
        """
        self.refresh()
        return [(v, i) for v in range(self.views) for i, item in enumerate(items)
                if (item.key, v) not in self._index]

    def lookup(self, items: Sequence[ItemId]) -> Tuple[Optional[torch.Tensor], List[Tuple[int, int]]]:
        """The stored features of ``items``.

        Every shard read is checked against its checksum; a corrupt one is dropped with a
        :class:`FeatureStoreWarning` and its entries count as missing.

        Args:
            items (Sequence[ItemId]): the images.

        Returns:
            tuple: features [V, N, D] with NaN rows where missing (None while the namespace holds nothing),
            and the (view, index) of each missing entry.
        """
        items = list(items)
        keys = [(item.key, v) for v in range(self.views) for item in items]
        rows = self._read(keys)
        missing = [(v, i) for v in range(self.views) for i, item in enumerate(items)
                   if (item.key, v) not in rows]
        layout = self._layout()
        if layout is None and rows:
            sample = next(iter(rows.values()))
            layout = (sample.shape[0], sample.dtype)
        if layout is None:
            return None, missing
        feats = torch.full((self.views, len(items), layout[0]), float('nan'), dtype=layout[1])
        for v in range(self.views):
            for i, item in enumerate(items):
                row = rows.get((item.key, v))
                if row is not None:
                    feats[v, i] = row
        return feats, missing

    def shards(self) -> List[dict]:
        """The index entries of the stored shards: ``{'name', 'count', 'nbytes', 'dim', 'dtype'}`` each."""
        self.refresh()
        return [{'name': stem, **{k: m[k] for k in ('count', 'nbytes', 'dim', 'dtype')}}
                for stem, m in sorted(self._manifests.items())]

    def refresh(self):
        """Read the index entries that other processes (or this one) added or removed since the last call."""
        try:
            names = os.listdir(self._shards)
        except FileNotFoundError:
            names = []
        stems = {n[:-len(MANIFEST_EXT)] for n in names if n.endswith(MANIFEST_EXT) and not n.startswith('.')}
        for stem in [s for s in self._manifests if s not in stems]:
            self._forget(stem)
        bad = []
        for stem in sorted(stems.difference(self._manifests)):
            try:
                manifest = self._read_manifest(stem)
            except FileNotFoundError:
                continue  # removed since the listing
            except (OSError, ValueError) as e:
                bad.append((stem, f'unreadable index entry: {e}'))
                continue
            self._add(stem, manifest)
        for stem, reason in bad:
            self._drop(stem, reason)

    # -- writing ------------------------------------------------------------------------------------------

    def put(self, items: Sequence[ItemId], features: torch.Tensor, views: Optional[Sequence[int]] = None) -> int:
        """Store features as one new shard (atomically, under the namespace lock).

        Entries already stored are skipped (each entry is stored once), so two processes may put the same
        features.

        Args:
            items (Sequence[ItemId]): the images.
            features (torch.Tensor): [V, N, D] (views 0..V-1 of each item), or [N, D] with ``views``.
            views (Sequence[int], optional): with [N, D] features, the view of each row (default: all 0).

        Returns:
            int: the number of entries written.
        """
        items = list(items)
        feats = torch.as_tensor(features)
        if feats.dim() == 3:
            if views is not None:
                raise ValueError('views is for [N, D] features; [V, N, D] features hold views 0..V-1')
            if feats.shape[1] != len(items):
                raise ValueError(f'features {tuple(feats.shape)} do not match {len(items)} items')
            keys = [(item.key, v) for v in range(feats.shape[0]) for item in items]
            feats = feats.reshape(-1, feats.shape[-1])
        elif feats.dim() == 2:
            if feats.shape[0] != len(items):
                raise ValueError(f'features {tuple(feats.shape)} do not match {len(items)} items')
            views = [0] * len(items) if views is None else [operator.index(v) for v in views]
            if len(views) != len(items):
                raise ValueError(f'{len(views)} views for {len(items)} items')
            keys = [(item.key, v) for item, v in zip(items, views)]
        else:
            raise ValueError(f'features must be [N, D] or [V, N, D], got {tuple(feats.shape)}')
        return self._write(keys, feats)

    def encode_missing(self, items: Sequence[ItemId], encode_fn: Callable[[List[Entry]], torch.Tensor],
                       batch_size: int = 64, timeout: Optional[float] = None) -> Encoded:
        """The features of all ``items`` (all views), encoding only the entries not stored yet.

        The missing entries are encoded in batches of ``batch_size``, and each batch is stored as a shard
        before the next one starts: an interrupted run keeps what it finished and the next one resumes. Other
        processes encoding the same namespace at the same time take other batches; an entry one of them is
        encoding is waited for, not encoded twice. Shards are checked when read; corrupt ones are encoded
        again (with a :class:`FeatureStoreWarning`).

        Args:
            items (Sequence[ItemId]): the images, in the order of the result (repeats allowed).
            encode_fn (Callable): ``encode_fn(entries) -> [len(entries), D]`` floating tensor (or array): the
                features of a batch of :class:`Entry` (item, view, seed), e.g. load ``entry.item.path``,
                run the pipeline under ``seeded_rng(entry.seed)`` when the seed is not None, and the model.
            batch_size (int): entries per ``encode_fn`` call and per shard.
            timeout (float, optional): seconds to wait at most for entries other processes are encoding.

        Returns:
            Encoded: (features [V, N, D], entries encoded by this call, encode_fn calls).

        Raises:
            RuntimeError: if an image file changed while it was encoded (its features are not stored: run
                again with fresh ids), or if stored features keep failing their checksum.
            TimeoutError: if another process held entries for longer than ``timeout``.
        """
        items = list(items)
        if operator.index(batch_size) < 1:
            raise ValueError(f'batch_size must be >= 1, got {batch_size}')
        order = [(item.key, v) for v in range(self.views) for item in items]
        by_key: Dict[EntryKey, Entry] = {}
        for v in range(self.views):
            for item in items:
                by_key.setdefault((item.key, v), Entry(item, v, self.view_seed(item, v)))
        pending, rows = list(by_key), {}
        encoded = batches = 0
        for round_ in range(MAX_ROUNDS + 1):
            rows.update(self._read(pending))
            pending = [k for k in pending if k not in rows]
            if not pending:
                break
            if round_ == MAX_ROUNDS:
                raise RuntimeError(f'{len(pending)} features of namespace {self.key[:12]} were encoded '
                                   f'{MAX_ROUNDS} times and still fail their checksum when read back: is the disk '
                                   f"under '{self.store.root}' failing?")
            e, b = self._encode(pending, by_key, encode_fn, batch_size, timeout)
            encoded, batches = encoded + e, batches + b
        if not items:
            layout = self._layout()
            empty = torch.zeros(self.views, 0, layout[0] if layout else 0, dtype=layout[1] if layout else None)
            return Encoded(empty, encoded, batches)
        # copied into one tensor row by row, each stored row dropped after its last use: the shards read are
        # freed as the copy advances, so the features are not held twice (the cache views of ImageNet: 625 MiB)
        uses = Counter(order)
        first = rows[order[0]]
        feats = first.new_empty((len(order), ) + tuple(first.shape))
        for i, k in enumerate(order):
            feats[i] = rows[k]
            uses[k] -= 1
            if not uses[k]:
                del rows[k]
        return Encoded(feats.reshape(self.views, len(items), -1), encoded, batches)

    def clear(self):
        """Delete this namespace's features (see :meth:`FeatureStore.clear`)."""
        self.store.clear(self)
        self.refresh()

    # -- internals ----------------------------------------------------------------------------------------

    def _encode(self, wanted: List[EntryKey], by_key: Dict[EntryKey, Entry], encode_fn, batch_size: int,
                timeout: Optional[float]) -> Tuple[int, int]:
        deadline = None if timeout is None else time.monotonic() + timeout
        delay, encoded, batches = 0.01, 0, 0
        while True:
            with self._lock:
                self.refresh()
                wanted = [k for k in wanted if k not in self._index]
                if not wanted:
                    return encoded, batches
                others = self._claimed_by_others()
                free = [k for k in wanted if k not in others]
                claim = self._claim(free[:batch_size]) if free else None
            if claim is None:  # all that is left is being encoded by other processes: wait for them
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f'{len(wanted)} features of namespace {self.key[:12]} are still being '
                                       f'encoded by another process after {timeout} s')
                time.sleep(delay)
                delay = min(2 * delay, 0.5)
                continue
            delay = 0.01
            try:
                batch = [by_key[k] for k in claim.keys]
                feats = self._check_batch(encode_fn(batch), len(batch))
                changed = [e.item for e in batch if e.item.changed()]
                if changed:
                    raise RuntimeError(f"{len(changed)} image(s) changed while they were encoded, e.g. "
                                       f"'{changed[0].path}'; their features are not stored. Run again to "
                                       'encode the new content')
                self._write(claim.keys, feats, claim)
            finally:
                self._release_claim(claim)
            encoded, batches = encoded + len(batch), batches + 1
            logger.debug('namespace %s: encoded a batch of %d (%d so far)', self.key[:12], len(batch), encoded)

    @staticmethod
    def _check_batch(feats, n: int) -> torch.Tensor:
        feats = torch.as_tensor(feats).detach().cpu()
        if feats.dim() != 2 or feats.shape[0] != n:
            raise ValueError(f'encode_fn must return [{n}, D] features for {n} entries, got {tuple(feats.shape)}')
        return feats

    def _write(self, keys: List[EntryKey], feats: torch.Tensor, claim: Optional[_Claim] = None) -> int:
        if not feats.is_floating_point():
            raise TypeError(f'features must be a floating tensor, got {feats.dtype}')
        feats = feats.detach().cpu()
        with self._lock:
            self.refresh()
            self._ensure_meta()
            self._collect_garbage()
            seen: Set[EntryKey] = set()
            keep = []
            for row, key in enumerate(keys):
                if key not in self._index and key not in seen:
                    seen.add(key)
                    keep.append(row)
            if keep:
                layout = self._layout()
                if layout is not None and layout != (feats.shape[1], feats.dtype):
                    raise ValueError(f'namespace {self.key[:12]} holds {layout[0]}-d {_dtype_name(layout[1])} '
                                     f'features; cannot add {feats.shape[1]}-d {_dtype_name(feats.dtype)} ones')
                rows = (feats if len(keep) == len(keys) else feats[keep]).contiguous()
                stem = f'{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}'
                data = safetensors_save({TENSOR_NAME: rows}, metadata={
                    'written_by': WRITTEN_BY, 'format': str(FORMAT_VERSION), 'namespace': self.key})
                manifest = {'format': FORMAT_VERSION, 'file': stem + SHARD_EXT,
                            'sha256': hashlib.sha256(data).hexdigest(), 'nbytes': len(data), 'count': len(keep),
                            'dim': int(rows.shape[1]), 'dtype': _dtype_name(rows.dtype),
                            'entries': [list(keys[r]) for r in keep]}
                atomic_write_bytes(osp.join(self._shards, stem + SHARD_EXT), data)
                atomic_write_bytes(osp.join(self._shards, stem + MANIFEST_EXT), _json_bytes(manifest))
                self._add(stem, self._validate_manifest(manifest))
            if claim is not None:
                self._release_claim(claim)
        return len(keep)

    def _read(self, keys: Sequence[EntryKey]) -> Dict[EntryKey, torch.Tensor]:
        self.refresh()
        by_stem: Dict[str, List[Tuple[EntryKey, int]]] = {}
        for key in dict.fromkeys(keys):
            loc = self._index.get(key)
            if loc is not None:
                by_stem.setdefault(loc[0], []).append((key, loc[1]))
        out = {}
        for stem, wanted in by_stem.items():
            try:
                tensor = self._load(stem)
            except FileNotFoundError:
                if osp.exists(osp.join(self._shards, stem + MANIFEST_EXT)):
                    self._drop(stem, 'its file is missing')
                else:
                    self._forget(stem)  # removed by another process (clear, or a corrupt shard it dropped)
                continue
            except _Corrupt as e:
                self._drop(stem, str(e))
                continue
            for key, row in wanted:
                out[key] = tensor[row]
        return out

    def _load(self, stem: str) -> torch.Tensor:
        manifest = self._manifests[stem]
        with open(osp.join(self._shards, manifest['file']), 'rb') as f:
            data = f.read()
        if len(data) != manifest['nbytes']:
            raise _Corrupt(f"{len(data)} bytes where the index says {manifest['nbytes']}")
        if hashlib.sha256(data).hexdigest() != manifest['sha256']:
            raise _Corrupt('checksum mismatch')
        try:
            tensor = safetensors_load(data)[TENSOR_NAME]
        except Exception as e:  # noqa: BLE001  (any parse error of a damaged file)
            raise _Corrupt(f'unreadable safetensors data: {e}') from None
        shape = (manifest['count'], manifest['dim'])
        if tuple(tensor.shape) != shape or _dtype_name(tensor.dtype) != manifest['dtype']:
            raise _Corrupt(f'holds {_dtype_name(tensor.dtype)} {tuple(tensor.shape)} where the index says '
                           f"{manifest['dtype']} ({manifest['count']}, {manifest['dim']})")
        return tensor

    def _read_manifest(self, stem: str) -> dict:
        with open(osp.join(self._shards, stem + MANIFEST_EXT), 'rb') as f:
            raw = f.read()
        return self._validate_manifest(json.loads(raw.decode('utf-8')))

    @staticmethod
    def _validate_manifest(manifest) -> dict:
        try:
            if manifest['format'] != FORMAT_VERSION:
                raise ValueError(f"format {manifest['format']!r}")
            entries = [(str(k), int(v)) for k, v in manifest['entries']]
            out = {'file': str(manifest['file']), 'sha256': str(manifest['sha256']),
                   'nbytes': int(manifest['nbytes']), 'count': int(manifest['count']), 'dim': int(manifest['dim']),
                   'dtype': str(manifest['dtype']), 'entries': entries}
            _dtype(out['dtype'])
        except (KeyError, TypeError, AttributeError) as e:
            raise ValueError(f'malformed ({type(e).__name__}: {e})') from None
        if len(entries) != out['count'] or osp.basename(out['file']) != out['file']:
            raise ValueError('malformed (count or file name)')
        return out

    def _add(self, stem: str, manifest: dict):
        self._manifests[stem] = manifest
        for row, key in enumerate(manifest['entries']):
            self._index.setdefault(key, (stem, row))

    def _forget(self, stem: str):
        manifest = self._manifests.pop(stem, None)
        if manifest is None:
            return
        for key in manifest['entries']:
            if self._index.get(key, (None, ))[0] == stem:
                del self._index[key]

    def _drop(self, stem: str, reason: str):
        manifest = self._manifests.get(stem)
        count = f"its {manifest['count']} features" if manifest else 'its features'
        warnings.warn(f"feature shard '{osp.join(self._shards, stem + SHARD_EXT)}' is corrupt ({reason}); "
                      f'{count} are dropped and will be encoded again', FeatureStoreWarning, stacklevel=3)
        with self._lock:
            _remove(osp.join(self._shards, stem + MANIFEST_EXT))
            _remove(osp.join(self._shards, stem + SHARD_EXT))
        self._forget(stem)

    def _layout(self) -> Optional[Tuple[int, torch.dtype]]:
        for manifest in self._manifests.values():
            return manifest['dim'], _dtype(manifest['dtype'])
        return None

    def _meta_path(self) -> str:
        return osp.join(self.path, META_NAME)

    def _check_meta(self):
        try:
            with open(self._meta_path()) as f:
                saved = json.load(f).get('identity')
        except (OSError, ValueError, AttributeError):
            return  # none yet (or unreadable: rewritten with the next shard)
        if saved is not None and canonical_json(saved) != canonical_json(self.identity):
            raise RuntimeError(f"feature namespace '{self.path}' was written for another identity than its key "
                               'says; remove the folder')

    def _ensure_meta(self):
        if not osp.exists(self._meta_path()):
            atomic_write_bytes(self._meta_path(), _json_bytes({
                'written_by': WRITTEN_BY, 'format': FORMAT_VERSION, 'key': self.key, 'identity': self.identity}))

    def _collect_garbage(self):
        """Remove what killed writers left (temporaries, a shard without index entry); under the lock."""
        for folder in (self.path, self._shards, self._claims):
            try:
                names = os.listdir(folder)
            except FileNotFoundError:
                continue
            for name in names:
                if is_temporary(name):
                    _remove(osp.join(folder, name))
                elif (folder == self._shards and name.endswith(SHARD_EXT)
                      and name[:-len(SHARD_EXT)] + MANIFEST_EXT not in names):
                    _remove(osp.join(folder, name))

    def _claim(self, keys: List[EntryKey]) -> _Claim:
        host = re.sub(r'[^A-Za-z0-9.-]', '_', socket.gethostname())[:40]
        cid = f'{host}-{os.getpid()}-{uuid.uuid4().hex[:12]}'
        lock = FileLock(osp.join(self._claims, cid + '.lock'), timeout=0)
        lock.acquire()
        try:
            atomic_write_bytes(osp.join(self._claims, cid + '.json'),
                               _json_bytes({'pid': os.getpid(), 'host': host, 'entries': [list(k) for k in keys]}),
                               durable=False)  # a claim only matters while its process lives
        except BaseException:
            lock.release()
            _remove(osp.join(self._claims, cid + '.lock'))
            raise
        return _Claim(cid, lock, list(keys))

    def _release_claim(self, claim: _Claim):
        if claim.released:
            return
        with self._lock:
            _remove(osp.join(self._claims, claim.cid + '.json'))
            claim.lock.release()
            _remove(osp.join(self._claims, claim.cid + '.lock'))
            claim.released = True

    def _claimed_by_others(self) -> Set[EntryKey]:
        """The entries live claims hold; removes the claims of dead processes. Under the lock."""
        claimed: Set[EntryKey] = set()
        try:
            names = os.listdir(self._claims)
        except FileNotFoundError:
            return claimed
        for name in names:
            if not name.endswith('.json') or name.startswith('.'):
                continue
            cid = name[:-len('.json')]
            probe = FileLock(osp.join(self._claims, cid + '.lock'), timeout=0)
            try:
                probe.acquire()
            except Timeout:  # its process is alive and encoding these entries
                try:
                    with open(osp.join(self._claims, name)) as f:
                        claimed.update((str(k), int(v)) for k, v in json.load(f)['entries'])
                except (OSError, ValueError, KeyError, TypeError):
                    pass
                continue
            try:
                _remove(osp.join(self._claims, name))
                logger.info('namespace %s: removed the claim %s of a process that ended without finishing it',
                            self.key[:12], cid)
            finally:
                probe.release()
                _remove(osp.join(self._claims, cid + '.lock'))
        return claimed


def encode_missing(ns: Namespace, items: Sequence[ItemId], encode_fn: Callable[[List[Entry]], torch.Tensor],
                   batch_size: int = 64, timeout: Optional[float] = None) -> Encoded:
    """:meth:`Namespace.encode_missing`: all features of ``items``, encoding only the missing entries.

    Args:
        ns (Namespace): the namespace (backbone, pipeline, seed, views).
        items (Sequence[ItemId]): the images.
        encode_fn (Callable): ``encode_fn(entries: list[Entry]) -> [len(entries), D]`` features.
        batch_size (int): entries per call and per shard.
        timeout (float, optional): longest wait for entries another process is encoding.

    Returns:
        Encoded: ``(features [V, N, D], encoded, batches)``; ``encoded == 0`` when everything was stored.
    """
    return ns.encode_missing(items, encode_fn, batch_size=batch_size, timeout=timeout)
