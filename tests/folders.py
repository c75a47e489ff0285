"""Helpers of the tests: small datasets in real on-disk layouts, and Dassl's few-shot sampling."""
import os
import random
from collections import defaultdict

import numpy as np
from PIL import Image


def write_image_folder(root, layout, size=8, ext='.JPEG', seed=0):
    """layout: {split_dir: {class_folder: number_of_images}}; returns root."""
    rng = np.random.default_rng(seed)
    for split, classes in layout.items():
        for cls, n in classes.items():
            folder = os.path.join(root, split, cls)
            os.makedirs(folder, exist_ok=True)
            for i in range(n):
                img = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
                Image.fromarray(img).save(os.path.join(folder, f'{cls}_{i:04d}{ext}'))
    return str(root)


def dassl_fewshot(items, num_shots, seed, repeat=True):
    """Dassl's generate_fewshot_dataset (datasets/base_dataset.py), as CoOp and Tip-Adapter use it, after
    seeding the global stream."""
    random.seed(seed)
    return dassl_draw(items, num_shots, repeat)


def dassl_draw(items, num_shots, repeat):
    """One generate_fewshot_dataset call on the global ``random`` stream as it stands."""
    tracker = defaultdict(list)
    for item in items:
        tracker[item[1]].append(item)
    output = []
    for _, group in tracker.items():
        if len(group) >= num_shots:
            output.extend(random.sample(group, num_shots))
        elif repeat:
            output.extend(random.choices(group, k=num_shots))
        else:
            output.extend(group)
    return output


def write_coop_split(folder, split_file, image_dir, entries_by_split, size=4):
    """A CoOp dataset folder: the image files and ``split_file`` in the real ``split_zhou_*.json`` format
    (``{"train"|"val"|"test": [[image path relative to image_dir, label, class name], ...]}``).

    entries_by_split: {split: [(relative image path, label, class name), ...]}; returns folder.
    """
    import json
    rng = np.random.default_rng(0)
    for entries in entries_by_split.values():
        for rel, _, _ in entries:
            path = os.path.join(folder, image_dir, rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(path)
    with open(os.path.join(folder, split_file), 'w') as f:
        json.dump({k: [list(e) for e in v] for k, v in entries_by_split.items()}, f)
    return str(folder)


def coop_fewshot_splits(train, val, num_shots, seed, repeat=False):
    """CoOp's reader flow, written out plainly: train.py's ``set_random_seed(seed)`` (``random.seed``), then,
    in the dataset's ``__init__`` (e.g. CoOp ``datasets/oxford_pets.py``), Dassl's ``generate_fewshot_dataset``
    on train and then on val with ``min(num_shots, 4)``, both drawing from the one global stream (Dassl's
    default ``repeat=False`` keeps every image of a class with fewer). Returns (train, val)."""
    random.seed(seed)
    return dassl_draw(train, num_shots, repeat), dassl_draw(val, min(num_shots, 4), repeat)
