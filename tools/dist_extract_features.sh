#!/usr/bin/env bash
# Usage: bash tools/dist_extract_features.sh CONFIG NUM_PROCESSES [extract_features.py args]
# GPUs use nccl; on a machine without CUDA the processes run on the CPU with gloo.
# PYTHON selects the interpreter (default: python on the PATH).
CONFIG=$1
GPUS=$2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}

PYTHONPATH="$(dirname "$0")/..":$PYTHONPATH \
${PYTHON:-python} -m torch.distributed.run \
    --nnodes=$NNODES \
    --node_rank=$NODE_RANK \
    --master_addr=$MASTER_ADDR \
    --nproc_per_node=$GPUS \
    --master_port=$PORT \
    "$(dirname "$0")/extract_features.py" \
    "$CONFIG" \
    --launcher pytorch "${@:3}"
