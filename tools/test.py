"""Evaluate a saved model on the test split; without a checkpoint, build the cache from the config.

Same arguments as mmpretrain's ``tools/test.py``, except that the checkpoint is optional.
"""
import os.path as osp
import sys

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..'))

from tip_adapter_mm.launch import main_test  # noqa: E402

if __name__ == '__main__':
    main_test()
