#!/usr/bin/env bash
# Usage: bash tools/dist_run.sh SCRIPT NUM_PROCESSES [SCRIPT args]
# Runs tools/SCRIPT in NUM_PROCESSES processes through torch.distributed.run with --launcher pytorch: the
# launcher behind dist_train.sh, dist_test.sh and dist_extract_features.sh.
# GPUs use nccl; on a machine without CUDA the processes run on the CPU with gloo.
# NNODES, NODE_RANK, PORT and MASTER_ADDR as for mmpretrain's scripts; PYTHON selects the interpreter.
SCRIPT=$1
GPUS=$2
shift 2
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
    "$(dirname "$0")/$SCRIPT" \
    "$@" \
    --launcher pytorch
