"""Writing outputs so that a killed run never leaves a half-written file behind."""
import json
import os
import os.path as osp
import tempfile
from contextlib import contextmanager

import torch

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def atomic_write_path(path):
    """A temporary path beside ``path`` that is renamed to ``path`` when the block succeeds."""
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix='.' + osp.basename(path), suffix='.tmp')
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the file the usual permissions
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if osp.exists(tmp):
            os.remove(tmp)


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
