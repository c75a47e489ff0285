"""scikit-learn's bundled handwritten digits as a small image-folder dataset for the offline demo.

``sklearn.datasets.load_digits`` ships 1797 grey 8x8 images of the digits 0-9 with scikit-learn, so the
demo needs no download. :func:`prepare_digits` writes them once as RGB 32x32 PNGs in the layout of
mmpretrain's ``CustomDataset`` (one folder per class)::

    root/{pretrain,train,val,test}/<digit>/<sklearn index:04d>.png

The ``pretrain`` split is only used to pretrain the tiny CLIP (see :mod:`.tiny_clip`); ``train`` holds the
few-shot candidates, ``val`` is for the hyper-parameter search and ``test`` for the final accuracy.
"""
import os
import os.path as osp
import shutil
import tempfile
from typing import Dict, List

import numpy as np

#: Class names, index = digit.
DIGIT_CLASSNAMES = ['zero', 'one', 'two', 'three', 'four', 'five', 'six', 'seven', 'eight', 'nine']

#: Prompt templates for the text classifier (and the pretraining captions).
DIGIT_TEMPLATES = ['a photo of the digit {}.', 'a handwritten {}.']

#: Split names, in the order they are carved out of each class.
DIGIT_SPLITS = ('pretrain', 'train', 'val', 'test')

#: Images per class of the first three splits; ``test`` gets the rest (44 to 53 per class).
DIGIT_SPLIT_SIZES = {'pretrain': 70, 'train': 40, 'val': 20}

#: Side of the written images.
DIGIT_IMAGE_SIZE = 32

#: Seed of the per-class shuffle that assigns images to splits.
DIGIT_SPLIT_SEED = 0

_COMPLETE_MARKER = '.complete'


def digit_splits(targets: np.ndarray, seed: int = DIGIT_SPLIT_SEED) -> Dict[str, List[int]]:
    """Deterministic, disjoint per-class split of the sklearn indices.

    Each class's indices are shuffled with ``np.random.RandomState(seed + digit)`` and cut into
    ``DIGIT_SPLIT_SIZES`` consecutive parts; the remainder is ``test``.

    Returns:
        dict: split name -> sorted list of sklearn indices.
    """
    splits = {name: [] for name in DIGIT_SPLITS}
    for digit in range(len(DIGIT_CLASSNAMES)):
        idx = np.flatnonzero(targets == digit)
        idx = idx[np.random.RandomState(seed + digit).permutation(len(idx))]
        start = 0
        for name in DIGIT_SPLITS[:-1]:
            n = DIGIT_SPLIT_SIZES[name]
            splits[name].extend(int(i) for i in idx[start:start + n])
            start += n
        if start >= len(idx):
            raise RuntimeError(f'digit {digit} has only {len(idx)} images, too few for the splits')
        splits[DIGIT_SPLITS[-1]].extend(int(i) for i in idx[start:])
    return {name: sorted(v) for name, v in splits.items()}


def render_digit(image: np.ndarray, size: int = DIGIT_IMAGE_SIZE):
    """8x8 grey digit with values 0..16 -> RGB PIL image of ``size`` x ``size`` (bicubic upsampling).

    White ink on a black background, as in the sklearn data.
    """
    from PIL import Image
    grey = np.clip(np.rint(np.asarray(image, dtype=np.float64) * (255. / 16.)), 0, 255).astype(np.uint8)
    return Image.fromarray(grey, mode='L').resize((size, size), Image.BICUBIC).convert('RGB')


def is_digits_complete(root: str) -> bool:
    """Whether ``root`` holds a dataset fully written by :func:`prepare_digits`."""
    return osp.isfile(osp.join(root, _COMPLETE_MARKER))


def prepare_digits(root: str = 'data/digits') -> str:
    """Write the digits as an image-folder dataset under ``root`` (once) and return ``root``.

    Idempotent and atomic: the dataset is written into a temporary sibling directory that is renamed to
    ``root`` when complete, so an interrupted run never leaves a partial dataset behind ``root``.
    """
    if is_digits_complete(root):
        return root
    from ..utils.extras import import_extra
    digits = import_extra('sklearn.datasets', 'demo', "writing the embedded demo's digits").load_digits()
    splits = digit_splits(digits.target)
    parent = osp.dirname(osp.abspath(root))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f'.{osp.basename(osp.abspath(root))}.tmp-', dir=parent)
    try:
        os.chmod(tmp, 0o755)  # mkdtemp makes it private
        for name in DIGIT_SPLITS:
            for digit in range(len(DIGIT_CLASSNAMES)):
                os.makedirs(osp.join(tmp, name, str(digit)))
            for i in splits[name]:
                path = osp.join(tmp, name, str(int(digits.target[i])), f'{i:04d}.png')
                render_digit(digits.images[i]).save(path)
        with open(osp.join(tmp, _COMPLETE_MARKER), 'w') as f:
            f.write('\n'.join(f'{name} {len(splits[name])}' for name in DIGIT_SPLITS) + '\n')
        if osp.isdir(root) and not is_digits_complete(root):
            # an incomplete dataset (e.g. partially copied): replace it, but only if it looks like ours
            foreign = set(os.listdir(root)) - set(DIGIT_SPLITS)
            if foreign:
                raise FileExistsError(f'{root} exists, is not a complete digits dataset and holds '
                                      f'unexpected entries {sorted(foreign)}; remove it first')
            shutil.rmtree(root)
        try:
            os.replace(tmp, root)
        except OSError:
            if not is_digits_complete(root):  # another process did not win the race: a real error
                raise
    finally:
        if osp.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    return root
