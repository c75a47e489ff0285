"""``python -m tip_adapter_mm.sweep``: the same as ``tip-adapter-sweep``."""
import sys

from .cli import main

sys.exit(main())
