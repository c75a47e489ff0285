"""Classify images with a trained adapter: ``python tools/infer.py CONFIG CHECKPOINT INPUT [INPUT ...]``
(``--help`` lists the options and the exit status)."""
import os.path as osp
import sys

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..'))

from tip_adapter_mm.cli.infer import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
