#!/usr/bin/env bash
# Distributed training with torchrun: bash tools/dist_train.sh CONFIG NGPUS [train.py args]
# Several nodes: set NNODES, NODE_RANK, MASTER_ADDR and PORT on every node.
# On a machine without CUDA the processes train on CPU with gloo.
#
# Preemption: SIGTERM, SIGUSR1 (and SIGINT) sent to this script are passed
# on to the training processes, which stop after the current iteration and
# save a checkpoint; the script then exits with status 75 (continue with
# --resume). Other failures keep torchrun's status.
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: bash tools/dist_train.sh CONFIG NGPUS [train.py arguments]" >&2
  exit 2
fi
CONFIG=$1
GPUS=$2
shift 2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
EXIT_PREEMPTED=75

# torchrun hides its processes' exit statuses: local rank 0 writes the
# checkpoint of a preemption stop into this file instead
MMSEG_PREEMPTED_FILE=$(mktemp "${TMPDIR:-/tmp}/mmseg_preempted.XXXXXX")
export MMSEG_PREEMPTED_FILE
trap 'rm -f "$MMSEG_PREEMPTED_FILE"' EXIT
# torchrun passes these on to its workers (and waits 30 s for them)
export TORCHELASTIC_SIGNALS_TO_HANDLE=${TORCHELASTIC_SIGNALS_TO_HANDLE:-SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1}

# job control: without it a background job would ignore SIGINT
set -m
PYTHONPATH="$(dirname "$0")/..${PYTHONPATH:+:$PYTHONPATH}" \
python -m torch.distributed.run \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$GPUS" \
    --master_port="$PORT" \
    "$(dirname "$0")/train.py" "$CONFIG" --launcher pytorch "$@" &
LAUNCHER=$!
for SIG in TERM USR1 INT; do
  trap "kill -s $SIG $LAUNCHER 2>/dev/null || true" "$SIG"
done
# a trapped signal interrupts wait: wait again until torchrun has ended
STATUS=0
while true; do
  wait "$LAUNCHER" && STATUS=0 || STATUS=$?
  kill -0 "$LAUNCHER" 2>/dev/null || break
done
if [ -s "$MMSEG_PREEMPTED_FILE" ]; then
  echo "dist_train.sh: preempted; checkpoint $(cat "$MMSEG_PREEMPTED_FILE"), continue with --resume" >&2
  exit "$EXIT_PREEMPTED"
fi
exit "$STATUS"
