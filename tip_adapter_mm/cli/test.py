"""``tip-adapter-test`` / ``python -m tip_adapter_mm.cli.test``: the arguments of mmpretrain's tools/test.py."""
import sys


def main(argv=None):
    from ..launch import main_test
    main_test(argv)
    return 0


if __name__ == '__main__':
    sys.exit(main())
