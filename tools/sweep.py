"""Few-shot sweep: the same as the installed ``tip-adapter-sweep`` command (:mod:`tip_adapter_mm.sweep`)."""
import os.path as osp
import sys

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..'))

from tip_adapter_mm.sweep.cli import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
