#!/usr/bin/env bash
# Install (once) and run the embedded demo: zero-shot CLIP vs Tip-Adapter on real images, offline, on CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup_env.sh
exec .venv/bin/python tools/demo.py "$@"
