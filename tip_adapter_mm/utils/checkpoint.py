"""Reading checkpoints without running code from them.

Every checkpoint, weights or split file a user hands in is read with ``torch.load(..., weights_only=True)``:
torch's restricted unpickler accepts tensors, containers and plain values and refuses every other global
(a pickled ``__reduce__`` payload among them). The project writes nothing else into its checkpoints: the
message hub, whose ``HistoryBuffer`` objects would need unsafe globals, is stored as plain data
(:func:`message_hub_to_plain`) and turned back into mmengine objects after loading
(:func:`message_hub_from_plain`).
"""
import os.path as osp
import pickle
import re
import zipfile
from typing import Any

import torch

#: marks a message hub stored as plain data by :func:`message_hub_to_plain`
PLAIN_HUB = '__plain_history_buffers__'


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read, or that was refused because it would run code."""


def safe_load(filename: str, map_location: Any = 'cpu', what: str = 'checkpoint', mmap: bool = False) -> Any:
    """``torch.load(filename, weights_only=True)``, with errors that name the file and the cause.

    Args:
        filename (str): the file.
        map_location: as for ``torch.load``.
        what (str): what the file is, for the messages ('checkpoint', 'Meta-Adapter weights', ...).
        mmap (bool): map the tensors instead of reading them (cheap when only the meta is needed); a file in
            torch's legacy (non-zip) format, which cannot be mapped, is read whole.

    Returns:
        the loaded object (tensors, containers and plain values only).

    Raises:
        FileNotFoundError: the file does not exist (or is not a file).
        CheckpointError: the file is empty, truncated, not a torch file, or holds a global outside torch's
            safe set (the message names it); nothing in the file is executed.
    """
    filename = osp.expanduser(str(filename))
    if not osp.exists(filename):
        raise FileNotFoundError(f"{what} '{filename}' does not exist")
    if not osp.isfile(filename):
        raise FileNotFoundError(f"{what} '{filename}' is not a file")
    if osp.getsize(filename) == 0:
        raise CheckpointError(f"{what} '{filename}' is empty (0 bytes): a run was probably killed while "
                              'writing it')
    if mmap and not zipfile.is_zipfile(filename):
        mmap = False  # the legacy format cannot be mapped
    try:
        return torch.load(filename, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:
        text = str(e)
        found = re.search(r'Unsupported global: GLOBAL ([\w.]+)', text) or \
            re.search(r'(?:global|GLOBAL)[ :]+([\w.]+)', text)
        if 'Weights only load failed' in text and found:
            raise CheckpointError(
                f"refused to load {what} '{filename}': it references the Python global '{found.group(1)}', "
                'which loading would have to import and may call (code in the file would run). Only tensors '
                'and plain values are accepted (torch.load weights_only=True); convert the file to a plain '
                'state dict (or safetensors) on a machine where you trust it.') from None
        raise CheckpointError(f"cannot read {what} '{filename}': it is not a valid torch file "
                              f'({_first_line(text)})') from None
    except Exception as e:  # noqa: BLE001 - damaged bytes make the safe unpickler raise any type
        # (EOFError, IndexError, struct.error, ...); nothing was executed, the file is simply unreadable.
        raise CheckpointError(f"cannot read {what} '{filename}': it is truncated or not a torch file "
                              f'({type(e).__name__}: {_first_line(str(e))})') from None


def _first_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ''
    return line[:200]


def message_hub_to_plain(state: dict) -> dict:
    """A ``MessageHub.state_dict()`` with every ``HistoryBuffer`` replaced by plain lists (in place).

    Args:
        state (dict): ``{'log_scalars': {key: HistoryBuffer}, 'runtime_info': ..., 'resumed_keys': ...}``.

    Returns:
        dict: the same dict; ``log_scalars`` maps keys to ``{'log': [...], 'count': [...], 'max_length': n}``
        and numpy values of ``runtime_info`` are Python numbers.
    """
    from mmengine.logging import HistoryBuffer
    scalars = state.get('log_scalars')
    if isinstance(scalars, dict) and not state.get(PLAIN_HUB):
        for key, buf in list(scalars.items()):
            if isinstance(buf, HistoryBuffer):
                log, count = buf.data
                scalars[key] = dict(log=[float(v) for v in log], count=[float(v) for v in count],
                                    max_length=int(buf.max_length))
        if isinstance(state.get('runtime_info'), dict):
            state['runtime_info'] = _plain(state['runtime_info'])
        state[PLAIN_HUB] = True
    return state


def _plain(value):
    """``value`` with numpy scalars and arrays (e.g. mmengine's ``eta``) turned into Python numbers/lists."""
    import numpy as np
    if isinstance(value, dict):
        return type(value)((k, _plain(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    return value


def message_hub_from_plain(state: dict) -> dict:
    """Undo :func:`message_hub_to_plain` (in place), so that ``MessageHub.load_state_dict`` accepts it."""
    from mmengine.logging import HistoryBuffer
    if isinstance(state, dict) and state.pop(PLAIN_HUB, False):
        scalars = state.get('log_scalars') or {}
        for key, value in list(scalars.items()):
            if isinstance(value, dict) and 'log' in value:
                scalars[key] = HistoryBuffer(value['log'], value['count'], value.get('max_length', 1000000))
    return state
