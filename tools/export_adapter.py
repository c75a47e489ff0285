"""Export a trained adapter to safetensors: ``python tools/export_adapter.py CHECKPOINT OUT.safetensors
[--config CONFIG] [--force]`` (``--help`` lists the options and the exit status)."""
import os.path as osp
import sys

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..'))

from tip_adapter_mm.cli.export_adapter import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
