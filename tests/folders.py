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
    """Dassl's generate_fewshot_dataset (datasets/base_dataset.py), as CoOp and Tip-Adapter use it."""
    random.seed(seed)
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
