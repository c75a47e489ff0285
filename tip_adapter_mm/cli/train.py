"""``tip-adapter-train`` / ``python -m tip_adapter_mm.cli.train``: the arguments of mmpretrain's tools/train.py."""
import sys


def main(argv=None):
    from ..launch import main_train
    main_train(argv)
    return 0


if __name__ == '__main__':
    sys.exit(main())
