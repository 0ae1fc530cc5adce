#!/usr/bin/env bash
# Training under Slurm: bash tools/slurm_train.sh PARTITION JOB_NAME CONFIG [train.py args]
# GPUS (total, default 4), GPUS_PER_NODE (default 4), CPUS_PER_TASK (default 5)
# and SRUN_ARGS come from the environment.
#
# Preemption (see docs/reliability.md): every task gets SIGUSR1 120 s before
# the time limit (PREEMPT_SIGNAL, default USR1@120; "none" to leave it out),
# and Slurm's preemption sends SIGTERM; on either, every rank stops after the
# current iteration, rank 0 saves a checkpoint and the script exits with 75.
# Inside a batch job (sbatch --requeue) it then requeues the job
# (REQUEUE=0 to not), and a requeued job (SLURM_RESTART_COUNT > 0) resumes
# from the work dir's latest checkpoint by itself.
set -euo pipefail
if [ $# -lt 3 ]; then
  echo "usage: bash tools/slurm_train.sh PARTITION JOB_NAME CONFIG [train.py arguments]" >&2
  exit 2
fi
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
shift 3
GPUS=${GPUS:-4}
GPUS_PER_NODE=${GPUS_PER_NODE:-4}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SRUN_ARGS=${SRUN_ARGS:-""}
PREEMPT_SIGNAL=${PREEMPT_SIGNAL:-USR1@120}
REQUEUE=${REQUEUE:-1}
EXIT_PREEMPTED=75

TRAIN_ARGS=("$@")
if [ "${SLURM_RESTART_COUNT:-0}" -gt 0 ]; then
  case " $* " in
    *" --resume"*) ;;
    *) TRAIN_ARGS+=(--resume) ;;
  esac
fi
SIGNAL_ARGS=()
if [ "$PREEMPT_SIGNAL" != none ]; then
  SIGNAL_ARGS=(--signal="$PREEMPT_SIGNAL")
fi

# srun ends the other tasks as soon as one exits non-zero, hiding their
# statuses: rank 0 writes the checkpoint of a preemption stop into this file
# (in the submission folder, which the nodes share) once it is saved
MMSEG_PREEMPTED_FILE=$(mktemp "$PWD/.mmseg_preempted.XXXXXX")
export MMSEG_PREEMPTED_FILE
trap 'rm -f "$MMSEG_PREEMPTED_FILE"' EXIT

STATUS=0
PYTHONPATH="$(dirname "$0")/..${PYTHONPATH:+:$PYTHONPATH}" \
srun -p "$PARTITION" \
    --job-name="$JOB_NAME" \
    --gres=gpu:"$GPUS_PER_NODE" \
    --ntasks="$GPUS" \
    --ntasks-per-node="$GPUS_PER_NODE" \
    --cpus-per-task="$CPUS_PER_TASK" \
    --kill-on-bad-exit=1 \
    ${SIGNAL_ARGS[@]+"${SIGNAL_ARGS[@]}"} \
    ${SRUN_ARGS} \
    python -u "$(dirname "$0")/train.py" "$CONFIG" --launcher slurm ${TRAIN_ARGS[@]+"${TRAIN_ARGS[@]}"} \
  || STATUS=$?
if [ -s "$MMSEG_PREEMPTED_FILE" ]; then
  echo "slurm_train.sh: preempted; checkpoint $(cat "$MMSEG_PREEMPTED_FILE")" >&2
  if [ -n "${SLURM_JOB_ID:-}" ] && [ "$REQUEUE" = 1 ]; then
    echo "slurm_train.sh: requeueing job $SLURM_JOB_ID; it will resume" >&2
    scontrol requeue "$SLURM_JOB_ID" || true
  fi
  exit "$EXIT_PREEMPTED"
fi
exit "$STATUS"
