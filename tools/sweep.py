"""Few-shot sweep: run configs x shots x seeds through tools/train.py, then report mean ± std over seeds.

    python tools/sweep.py --configs CFG [CFG ...] --shots 1 2 4 8 16 --seeds 1 2 3 --work-dir work_dirs/sweep \\
        [--launcher none|pytorch --gpus N] [--cfg-options KEY=VALUE ...] [--dry-run] [--report-only]

Runs that already wrote results.json are skipped. See :mod:`tip_adapter_mm.sweep`.
"""
import os.path as osp
import sys

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..'))

from tip_adapter_mm.sweep import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
