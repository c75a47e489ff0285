"""Writing outputs so that a killed run never leaves a half-written file behind."""
import json
import os
import os.path as osp
import tempfile
from contextlib import contextmanager

import torch

_UMASK = os.umask(0)
os.umask(_UMASK)


TMP_SUFFIX = '.tmp'


@contextmanager
def atomic_write_path(path, durable: bool = False):
    """A temporary path beside ``path`` (``.<name>*.tmp``) that is renamed to ``path`` when the block succeeds.

    Args:
        path (str): the target.
        durable (bool): also flush the file and the rename to disk (``fsync``), for files that must survive
            a machine crash, not only a killed process.
    """
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix='.' + osp.basename(path), suffix=TMP_SUFFIX)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the file the usual permissions
    try:
        yield tmp
        if durable:
            with open(tmp, 'rb') as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
        if durable:
            fsync_dir(folder)
    finally:
        if osp.exists(tmp):
            os.remove(tmp)


def atomic_write_bytes(path, data: bytes, durable: bool = True):
    """Write ``data`` to ``path`` so that ``path`` holds either its old content or all of ``data``."""
    with atomic_write_path(path, durable) as tmp:
        with open(tmp, 'wb') as f:
            f.write(data)


def fsync_dir(folder: str):
    """Flush a folder's entries (a rename) to disk, where the OS allows it."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def is_temporary(name: str) -> bool:
    """Whether a file name is one of :func:`atomic_write_path`'s temporaries."""
    return name.startswith('.') and name.endswith(TMP_SUFFIX)


def atomic_json_dump(obj, path, **kwargs):
    """Write ``obj`` as JSON to ``path`` through a temporary file and a rename."""
    kwargs.setdefault('indent', 2)
    with atomic_write_path(path) as tmp:
        with open(tmp, 'w') as f:
            json.dump(obj, f, **kwargs)
            f.write('\n')


def atomic_torch_save(obj, path):
    """``torch.save`` to ``path`` through a temporary file and a rename."""
    with atomic_write_path(path) as tmp:
        torch.save(obj, tmp)
