#!/usr/bin/env bash
# Create the virtualenv .venv (once) and install the project with its test dependencies into it.
# Re-running is cheap: the install is redone only when setup.py changes.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
stamp=.venv/.tip_adapter_mm_setup
want=$(sha256sum setup.py | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    # torch is not pinned to one version on purpose: pip then picks a matching torch/torchvision pair
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -e ".[tests]"
    echo "$want" > "$stamp"
fi
