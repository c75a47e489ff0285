"""Progress bars for the long stages (feature extraction, the tiny CLIP's pretraining, the alpha/beta search).

One place decides how they look: tqdm (a maintained library; open_clip already depends on it) with rate and
ETA, on the main process only, refreshed at most every 0.5 s on a terminal and every 30 s when stderr is a
file or a pipe (a log then holds a few lines, not thousands), and off with ``TIP_ADAPTER_MM_PROGRESS=0``.
"""
import os
import sys
from typing import Iterable, Optional

from tqdm import tqdm


def _main_process() -> bool:
    try:
        from mmengine.dist import is_main_process
    except ImportError:  # pragma: no cover  (mmengine is a dependency)
        return True
    return is_main_process()


def progress_bar(iterable: Optional[Iterable] = None, total: Optional[int] = None, desc: str = '',
                 unit: str = 'it', **kwargs) -> tqdm:
    """A tqdm bar over ``iterable`` (or one to ``update`` by hand) with rate and ETA.

    Args:
        iterable: what to iterate over (None: call ``update(n)`` yourself).
        total (int, optional): the number of steps (``len(iterable)`` by default).
        desc (str): the stage, shown before the bar.
        unit (str): what one step is ('img', 'step', 'beta', ...).
        **kwargs: other tqdm arguments.
    """
    terminal = sys.stderr.isatty()
    disabled = os.environ.get('TIP_ADAPTER_MM_PROGRESS', '1') == '0' or not _main_process()
    return tqdm(iterable, total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=terminal,
                mininterval=0.5 if terminal else 30., disable=disabled, **kwargs)
