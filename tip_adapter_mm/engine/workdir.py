"""The work dir of a run: one run at a time, no stale temporaries, no file overwritten that the project did not
write (unless asked)."""
import json
import os
import os.path as osp
import sys
from typing import Dict, Iterable

from filelock import FileLock, Timeout

from ..utils.checkpoint import safe_load
from ..utils.io import is_temporary
from .identity import KEY as IDENTITY

#: the mark the project puts in every JSON file it writes
WRITTEN_BY = 'tip_adapter_mm'
LOCK_NAME = '.tip_adapter_mm.lock'
_LOCKS: Dict[str, FileLock] = {}  # one lock object per work dir and process (reentrant)


def lock_work_dir(work_dir: str) -> FileLock:
    """Lock ``work_dir`` for this process; a clear error if another process runs in it.

    The lock is an OS file lock (released when the process ends, also if it is killed); the other
    process's pid and command line are written beside it, for the message.
    """
    os.makedirs(work_dir, exist_ok=True)
    path = osp.join(work_dir, LOCK_NAME)
    lock = _LOCKS.setdefault(osp.abspath(path), FileLock(path, timeout=0))
    try:
        lock.acquire()
    except Timeout:
        try:
            with open(path + '.owner') as f:
                owner = f.read().strip()
        except OSError:
            owner = 'unknown'
        raise RuntimeError(f"work dir '{work_dir}' is in use by another run (process {owner}); wait for it, or "
                           'use another --work-dir') from None
    with open(path + '.owner', 'w') as f:
        f.write(f'{os.getpid()}: {" ".join(sys.argv)[:300]}')
    return lock


def remove_stale_temporaries(work_dir: str) -> int:
    """Remove the temporaries of atomic writes that a killed run left (``.<name>*.tmp``); return how many."""
    removed = 0
    for name in os.listdir(work_dir):
        path = osp.join(work_dir, name)
        if is_temporary(name) and osp.isfile(path):
            os.remove(path)
            removed += 1
    return removed


def written_by_project(path: str) -> bool:
    """Whether the file at ``path`` is one the project wrote (its JSON mark, or a checkpoint with its meta)."""
    if path.endswith('.json'):
        try:
            with open(path) as f:
                data = json.load(f)
        except (OSError, ValueError):
            return False
        return isinstance(data, dict) and str(data.get('written_by', '')).startswith(WRITTEN_BY)
    try:
        state = safe_load(path, mmap=True)
    except Exception:  # noqa: BLE001  (unreadable or refused: not ours)
        return False
    meta = state.get('meta') if isinstance(state, dict) else None
    return isinstance(meta, dict) and (IDENTITY in meta or WRITTEN_BY in meta)


def check_outputs(work_dir: str, names: Iterable[str], force: bool = False):
    """Raise if a file the run will write exists in ``work_dir`` and was not written by the project.

    Args:
        work_dir (str): the run's folder.
        names: the file names the run writes.
        force (bool): overwrite anyway (``--force`` / ``force_overwrite=True``).
    """
    if force:
        return
    for name in names:
        path = osp.join(work_dir, name)
        if osp.isfile(path) and not written_by_project(path):
            raise FileExistsError(f"'{path}' exists and was not written by this project: the run would overwrite "
                                  'it. Use another --work-dir, move the file, or pass --force '
                                  '(--cfg-options force_overwrite=True) to overwrite it')
