"""Encode a config's splits into its feature store, so that every later run reads them (see the README).

    python tools/extract_features.py CONFIG [--splits train val test] [--views 10] [--cfg-options ...]
"""
import os.path as osp
import sys

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..'))

from tip_adapter_mm.cli.extract_features import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
