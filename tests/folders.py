"""Writing small image-folder datasets in real on-disk layouts for the tests."""
import os

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
