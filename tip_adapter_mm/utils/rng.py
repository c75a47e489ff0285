"""Seeding the randomness of one item, so that augmentations are a function of (seed, epoch or view, item)."""
import random
from contextlib import contextmanager

import numpy as np
import torch

_MASK = (1 << 64) - 1


def mix64(x: int) -> int:
    """splitmix64's finaliser: a cheap, well-spread hash of an integer."""
    x = ((x ^ (x >> 30)) * 0xbf58476d1ce4e5b9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94d049bb133111eb) & _MASK
    return x ^ (x >> 31)


@contextmanager
def seeded_rng(seed: int):
    """Seed Python, NumPy and torch (CPU) RNGs inside the block and restore their states afterwards."""
    py_state, np_state = random.getstate(), np.random.get_state()
    torch_state = torch.default_generator.get_state()
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.default_generator.manual_seed(seed)
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
        torch.default_generator.set_state(torch_state)
