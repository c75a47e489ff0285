#!/usr/bin/env bash
# Create the virtualenv .venv (once) and install the project with its test dependencies into it.
# Re-running is cheap: the install is redone only when setup.py or this script changes.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
stamp=.venv/.tip_adapter_mm_setup
want=$(cat setup.py tools/setup_env.sh | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    # torch is not pinned to one version on purpose: pip then picks a matching torch/torchvision pair
    .venv/bin/python -m pip install --quiet --upgrade pip
    # the tests extra holds the demo's scikit-learn, the plots' matplotlib and openmim<0.3.9 (for the tests
    # that run `mim train/test`): openmim 0.3.9 requires opendatalab, which pins setuptools 60 (torch needs 77+)
    .venv/bin/python -m pip install --quiet -e ".[tests]"
    echo "$want" > "$stamp"
fi
