#!/usr/bin/env bash
# Usage: bash tools/dist_test.sh CONFIG [CHECKPOINT] NUM_PROCESSES [test.py args]
# As mmpretrain's dist_test.sh, except that the checkpoint may be left out (the cache is then built).
CONFIG=$1
if [[ "$2" =~ ^[0-9]+$ ]]; then
    CHECKPOINT=""
    GPUS=$2
    shift 2
else
    CHECKPOINT=$2
    GPUS=$3
    shift 3
fi
exec bash "$(dirname "$0")/dist_run.sh" test.py "$GPUS" "$CONFIG" ${CHECKPOINT:+"$CHECKPOINT"} "$@"
