"""The keys of the feature store: what identifies a backbone, a pipeline, an image and an augmented view.

Everything here is pure Python (hashlib, json, os); nothing is unpickled and nothing imports mmengine.
"""
import hashlib
import json
import os
import os.path as osp
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from filelock import FileLock

from ..utils.io import atomic_write_bytes

#: bumped whenever the meaning of a key or the layout of a shard changes: old entries are then never served
FORMAT_VERSION = 1

#: a file whose ctime is this close to now may still change within the same timestamp tick, so its hash is
#: not cached (git's "racily clean" rule); 2 s covers filesystems with coarse timestamps
RACY_WINDOW_NS = 2_000_000_000

#: backbone config keys that do not change an image feature (they are left out of the key)
IGNORED_BACKBONE_KEYS = frozenset({'type', 'freeze', 'save_frozen', 'cache_dir', 'text_batch_size', 'init_cfg'})

_CHUNK = 1 << 20


def canonical(obj: Any) -> Any:
    """``obj`` as plain JSON data (dicts, lists, str, int, float, bool, None), for a stable key.

    Tuples become lists; NumPy/torch scalars and arrays become numbers and lists; classes and functions
    (a transform's ``type`` may be one) become ``{'__callable__': 'module.qualname'}``.

    Args:
        obj: a config value (a pipeline, a backbone dict, ...).

    Raises:
        TypeError: for a value with no stable text form (an arbitrary object), or a dict with a non-string key.
    """
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, Mapping):
        out = {}
        for key, value in obj.items():
            if not isinstance(key, str):
                raise TypeError(f'feature store keys need string dict keys, got {key!r} in {obj!r}')
            out[key] = canonical(value)
        return out
    if isinstance(obj, (list, tuple)):
        return [canonical(v) for v in obj]
    if isinstance(obj, (os.PathLike, )):
        return os.fspath(obj)
    if hasattr(obj, 'tolist') and callable(obj.tolist):  # numpy / torch scalars and arrays
        return canonical(obj.tolist())
    if isinstance(obj, type) or callable(obj):
        module, name = getattr(obj, '__module__', None), getattr(obj, '__qualname__', None)
        if module and name and '<' not in name:
            return {'__callable__': f'{module}.{name}'}
    raise TypeError(f'{obj!r} ({type(obj).__name__}) has no stable text form for a feature store key; '
                    'use plain config values (numbers, strings, lists, dicts)')


def canonical_json(obj: Any) -> str:
    """The canonical text of ``obj``: ``json.dumps`` of :func:`canonical` with sorted keys, no spaces."""
    return json.dumps(canonical(obj), sort_keys=True, separators=(',', ':'), ensure_ascii=True)


def sha256_text(text: str) -> str:
    """The hex sha256 of a string."""
    return hashlib.sha256(text.encode('utf-8')).hexdigest()


def hash_file_contents(path: str) -> str:
    """The hex sha256 of the bytes of the file at ``path`` (read in 1 MiB chunks)."""
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(_CHUNK), b''):
            digest.update(chunk)
    return digest.hexdigest()


def _file_signature(st: os.stat_result) -> Tuple[int, int, int, int, int]:
    # ctime cannot be set by a user (os.utime updates it): an in-place edit that restores size and mtime is
    # still seen; the inode catches a replaced file
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)


def _is_racy(st: os.stat_result) -> bool:
    return time.time_ns() - max(st.st_ctime_ns, st.st_mtime_ns) < RACY_WINDOW_NS


class FileHashCache:
    """sha256 of files, each hashed once while it is unchanged.

    An entry is keyed by the file's real path, size, mtime, ctime, inode and device, so a changed or replaced
    file is hashed again; a file changed in the last ``RACY_WINDOW_NS`` is hashed but not cached. With
    ``path``, the cache is also a JSON file shared by processes (written atomically under a file lock).

    Args:
        path (str, optional): the JSON file of the persistent cache; None keeps the cache in memory only.
        lock_timeout (float): seconds to wait for the cache file's lock (-1: forever).
    """

    def __init__(self, path: Optional[str] = None, lock_timeout: float = 600):
        self.path = osp.abspath(path) if path else None
        self._memory: Dict[str, list] = {}
        self._lock = FileLock(self.path + '.lock', timeout=lock_timeout) if self.path else None
        self._dirty: Dict[str, list] = {}
        self._loaded = False

    def sha256(self, path: str, flush: bool = True) -> str:
        """The hex sha256 of the file at ``path``.

        Args:
            path (str): the file.
            flush (bool): write a new entry to the persistent cache now (False: at :meth:`flush`).

        Raises:
            FileNotFoundError: if there is no such file.
            RuntimeError: if the file changed while it was being hashed.
        """
        real = osp.realpath(path)
        st = os.stat(real)
        signature = list(_file_signature(st))
        entry = self._memory.get(real)
        if entry is None and self.path and not self._loaded:  # read the cache file once per process
            self._loaded = True
            self._memory.update(self._read())
            entry = self._memory.get(real)
        if entry is not None and entry[:-1] == signature:
            return entry[-1]
        digest = hash_file_contents(real)
        after = os.stat(real)
        if list(_file_signature(after)) != signature:
            raise RuntimeError(f"'{path}' changed while it was being hashed; try again when it is written")
        if not _is_racy(after):
            self._memory[real] = signature + [digest]
            self._dirty[real] = signature + [digest]
            if flush:
                self.flush()
        return digest

    def sha256_many(self, paths: Iterable[str]) -> List[str]:
        """:meth:`sha256` of each path, with one write of the persistent cache at the end."""
        try:
            return [self.sha256(p, flush=False) for p in paths]
        finally:
            self.flush()

    def flush(self):
        """Write the new entries to the persistent cache file (merged with what other processes wrote)."""
        if not self.path or not self._dirty:
            self._dirty.clear()
            return
        with self._lock:
            files = self._read()
            files.update(self._dirty)
            data = {'written_by': 'tip_adapter_mm.features', 'format': FORMAT_VERSION, 'files': files}
            atomic_write_bytes(self.path, (json.dumps(data, sort_keys=True, indent=0) + '\n').encode())
        self._dirty.clear()

    def forget(self):
        """Drop the in-memory entries (after the cache file was removed)."""
        self._memory.clear()
        self._dirty.clear()
        self._loaded = False

    def _read(self) -> Dict[str, list]:
        try:
            with open(self.path) as f:
                data = json.load(f)
            files = data['files']
            return {k: v for k, v in files.items()
                    if isinstance(v, list) and len(v) == 6 and isinstance(v[-1], str)}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return {}  # no cache yet, or an unreadable one: hash again


#: the in-memory cache used when no store cache is given
DEFAULT_HASHES = FileHashCache()


def is_local_weights(pretrained: str) -> bool:
    """Whether ``pretrained`` names a local checkpoint file rather than an open_clip tag (the backbone's rule)."""
    return (osp.sep in pretrained or pretrained.endswith(('.pt', '.pth', '.bin', '.safetensors', '.ckpt'))
            or osp.exists(pretrained))


def backbone_identity(backbone: Mapping, hashes: Optional[FileHashCache] = None) -> Dict[str, Any]:
    """What of a backbone config changes its image features: model, weights and precision.

    The weights are the open_clip tag (``'openai'``, ``'laion2b_s34b_b79k'``, ...) or, for a local file, the
    sha256 of its content (so a renamed file keeps its features and a rewritten one does not). Keys that do
    not change a feature (``type``, ``freeze``, ``cache_dir``, ...) are dropped; any other key is kept.

    Args:
        backbone (Mapping): ``model_name`` (required), ``pretrained`` (required: a tag or a file),
            ``precision`` (default ``'fp32'``) and optionally more keys (a ``CLIPBackbone`` config works).
        hashes (FileHashCache, optional): the cache of file hashes (default: an in-memory one).

    Raises:
        ValueError: without ``model_name``, or with random weights (``pretrained=None``), whose features
            cannot be stored under a stable key.
        FileNotFoundError: if ``pretrained`` looks like a file and does not exist.
    """
    rest = dict(backbone)
    name = rest.pop('model_name', None)
    if not name:
        raise ValueError(f'a feature store backbone needs a model_name, got {dict(backbone)!r}')
    pretrained = rest.pop('pretrained', None)
    if pretrained is None or pretrained == '':
        raise ValueError('random CLIP weights (pretrained=None) have no stable identity; their features '
                         'cannot be stored')
    pretrained = os.fspath(pretrained)
    if is_local_weights(pretrained):
        if not osp.isfile(pretrained):
            raise FileNotFoundError(f"CLIP weights file '{pretrained}' does not exist")
        weights = {'sha256': (hashes or DEFAULT_HASHES).sha256(pretrained)}
    else:
        weights = {'tag': pretrained}
    identity = {'model_name': str(name), 'weights': weights,
                'precision': str(rest.pop('precision', None) or 'fp32').lower()}
    extra = {k: v for k, v in rest.items() if k not in IGNORED_BACKBONE_KEYS}
    if extra:
        identity['extra'] = canonical(extra)
    return identity


@dataclass(frozen=True)
class ItemId:
    """The identity of one input image: two ``ItemId`` are equal exactly when their ``key`` is.

    Build one with :meth:`from_file` (an image file under a data root) or :meth:`from_bytes`; ``ItemId(key)``
    takes any caller-made key. ``path`` (where to read the image) and ``seed_name`` (what augmentation
    seeds derive from) are not part of the identity.

    Args:
        key (str): the identity.
        path (str, optional): the absolute path of the image file.
        seed_name (str, optional): the name view seeds derive from (default: ``key``).
    """
    key: str
    path: Optional[str] = field(default=None, compare=False, repr=False)
    seed_name: Optional[str] = field(default=None, compare=False, repr=False)
    _signature: Optional[tuple] = field(default=None, compare=False, repr=False)

    def __post_init__(self):
        if not isinstance(self.key, str) or not self.key:
            raise ValueError(f'an ItemId key must be a non-empty string, got {self.key!r}')
        if self.seed_name is None:
            object.__setattr__(self, 'seed_name', self.key)

    @classmethod
    def from_file(cls, data_root: str, rel_path: str, mode: str = 'stat',
                  hashes: Optional[FileHashCache] = None) -> 'ItemId':
        """The id of the image ``rel_path`` under ``data_root``.

        Args:
            data_root (str): the dataset's root folder (not part of the key: a moved dataset keeps its
                features).
            rel_path (str): the image's path relative to ``data_root`` (an absolute path inside it works).
            mode (str): ``'stat'`` (default): the key is the relative path, size and mtime, like rsync's
                quick check (an edit that keeps both size and mtime is not seen); ``'content'``: the key is
                the sha256 of the file's bytes (every image is read once; identical files share features).
            hashes (FileHashCache, optional): the hash cache of ``'content'`` mode (default: an in-memory
                one). New entries of a persistent cache are written by its ``flush()``
                (:meth:`FeatureStore.items` does that once for a whole list).

        Raises:
            ValueError: for an unknown mode or a path outside ``data_root``.
            FileNotFoundError: if the file does not exist.
        """
        root = osp.abspath(data_root)
        path = osp.normpath(osp.join(root, rel_path))
        rel = osp.relpath(path, root)
        if rel == '.' or rel.startswith('..' + osp.sep) or rel == '..':
            raise ValueError(f"image '{rel_path}' is not inside the data root '{data_root}'")
        rel = rel.replace(osp.sep, '/')
        if mode == 'stat':
            st = os.stat(path)
            key = 'file:' + json.dumps([rel, st.st_size, st.st_mtime_ns], ensure_ascii=True)
            return cls(key, path=path, seed_name='path:' + rel, _signature=('stat', st.st_size, st.st_mtime_ns))
        if mode == 'content':
            st = os.stat(path)
            digest = (hashes or DEFAULT_HASHES).sha256(path, flush=False)
            return cls('sha256:' + digest, path=path, _signature=('content', ) + _file_signature(st))
        raise ValueError(f"ItemId mode must be 'stat' or 'content', got {mode!r}")

    @classmethod
    def from_bytes(cls, data: bytes) -> 'ItemId':
        """The id of an image given as encoded bytes: the sha256 of the bytes (same key as ``'content'``)."""
        return cls('sha256:' + hashlib.sha256(data).hexdigest())

    def changed(self) -> bool:
        """Whether the file changed since this id was made (always False for an id without a file)."""
        if self.path is None or self._signature is None:
            return False
        try:
            st = os.stat(self.path)
        except OSError:
            return True
        if self._signature[0] == 'stat':
            return self._signature[1:] != (st.st_size, st.st_mtime_ns)
        return self._signature[1:] != _file_signature(st)


def view_seed(seed: Optional[int], view: int, item: ItemId) -> Optional[int]:
    """The augmentation seed of view ``view`` of ``item`` (None for a deterministic pipeline, ``seed=None``).

    A function of (seed, view, image) only, never of the item's position in a dataset, so the views of an
    image are the same in an 8-shot and a 16-shot sample (and in any process). It fits ``seeded_rng``.
    """
    if seed is None:
        return None
    digest = hashlib.sha256(canonical_json([FORMAT_VERSION, int(seed), int(view), item.seed_name]).encode())
    return int.from_bytes(digest.digest()[:8], 'big') >> 1


def pipeline_identity(pipeline: Sequence) -> list:
    """The canonical form of a transform config list (order kept, dict keys sorted in the text)."""
    if isinstance(pipeline, (str, bytes, Mapping)) or not isinstance(pipeline, (list, tuple)):
        raise TypeError(f'a pipeline is a list of transform configs, got {type(pipeline).__name__}')
    return canonical(list(pipeline))
