#!/usr/bin/env bash
# Usage: bash tools/dist_extract_features.sh CONFIG NUM_PROCESSES [extract_features.py args]
# The missing images are split across the processes, which write one feature store (tools/dist_run.sh).
exec bash "$(dirname "$0")/dist_run.sh" extract_features.py "$2" "$1" "${@:3}"
