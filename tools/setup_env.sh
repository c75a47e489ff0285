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
    .venv/bin/python -m pip install --quiet -e ".[tests]"
    # mim, for the tests that run `mim train/test mmpretrain`: openmim requires opendatalab, which pins
    # setuptools 60 (older than torch needs); mim's train and test commands never use it, so leave it out
    .venv/bin/python -m pip install --quiet --no-deps "openmim>=0.3.9,<0.4"
    .venv/bin/python -m pip install --quiet click colorama pandas requests rich tabulate
    echo "$want" > "$stamp"
fi
