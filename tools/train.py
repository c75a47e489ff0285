"""Train (or, for training-free methods, build, select and save) a model from a config.

Same arguments as mmpretrain's ``tools/train.py``.
"""
import os.path as osp
import sys

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..'))

from tip_adapter_mm.launch import main_train  # noqa: E402

if __name__ == '__main__':
    main_train()
