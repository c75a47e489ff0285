#!/usr/bin/env bash
# Usage: bash tools/dist_train.sh CONFIG NUM_PROCESSES [train.py args]
# GPUs use nccl; on a machine without CUDA the processes run on the CPU with gloo (tools/dist_run.sh).
exec bash "$(dirname "$0")/dist_run.sh" train.py "$2" "$1" "${@:3}"
