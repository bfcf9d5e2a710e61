#!/bin/bash
# Shared body of sft.sbatch / gspo.sbatch (exec'd by them, so it *is* the batch shell and receives the
# B:USR1 signal). Usage inside a SLURM allocation: run.sh {sft|gspo} RECIPE [key=value ...]
#
# Environment knobs: LAUNCH_CONFIG (default launch/accelerate/multi-node.yaml), GPUS_PER_NODE (8),
# MASTER_PORT (29500), MAX_REQUEUES (20).
set -uo pipefail
# Time limit near (--signal=B:USR1@...) or scancel --signal=USR1 --batch: this shell is the only one signalled,
# so it asks every rank through the STOP file they check at each optimizer step; they agree on a step, save
# checkpoint-N (completion-marked), write preempted.json and exit. A real preemption SIGTERMs every process;
# the workers handle that themselves (and if SLURM's KillWait ends before the save completes, the unmarked
# checkpoint is ignored on restart and the previous complete one is used).
STOP_REQUESTED=
trap 'echo "$(date) stop requested: checkpoint at the next step"; STOP_REQUESTED=1
      [ -n "${OUTPUT_DIR:-}" ] && touch "$OUTPUT_DIR/STOP"' USR1 TERM

USAGE="usage: run.sh sft|gspo RECIPE [key=value ...]"
STAGE=${1:?$USAGE}
RECIPE=${2:?$USAGE}
shift 2
cd "${SLURM_SUBMIT_DIR:-.}"

LAUNCH_CONFIG=${LAUNCH_CONFIG:-launch/accelerate/multi-node.yaml}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
MAX_REQUEUES=${MAX_REQUEUES:-20}
export MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
export MASTER_PORT=${MASTER_PORT:-29500}
export NUM_PROCESSES=$((SLURM_NNODES * GPUS_PER_NODE))
export LAUNCH_CONFIG STAGE RECIPE
OUTPUT_DIR=$(python -c 'import sys; from mmfinereason.config import load_recipe; print(load_recipe(sys.argv[1], sys.argv[2:]).train.output_dir)' "$RECIPE" "$@") || exit 2
mkdir -p "$OUTPUT_DIR"
rm -f "$OUTPUT_DIR/STOP"  # a stale request from the previous run
[ -n "$STOP_REQUESTED" ] && touch "$OUTPUT_DIR/STOP"
echo "$(date) job $SLURM_JOB_ID (restart ${SLURM_RESTART_COUNT:-0}): $STAGE $RECIPE on $SLURM_NNODES nodes x $GPUS_PER_NODE GPUs -> $OUTPUT_DIR"

# One accelerate launcher per node; node rank from SLURM. Single quotes: expanded on each node.
srun --ntasks-per-node=1 --kill-on-bad-exit=1 bash -c '
  accelerate launch --config_file "$LAUNCH_CONFIG" \
    --num_machines "$SLURM_NNODES" --num_processes "$NUM_PROCESSES" --machine_rank "$SLURM_NODEID" \
    --main_process_ip "$MASTER_ADDR" --main_process_port "$MASTER_PORT" \
    -m mmfinereason "$STAGE" "$RECIPE" "$@"' _ "$@" &
SRUN_PID=$!
while true; do  # `wait` returns early when a trapped signal arrives: keep waiting for srun itself
  wait "$SRUN_PID"; STATUS=$?
  kill -0 "$SRUN_PID" 2>/dev/null || break
done

if [ -f "$OUTPUT_DIR/preempted.json" ]; then
  if [ "${SLURM_RESTART_COUNT:-0}" -lt "$MAX_REQUEUES" ]; then
    echo "$(date) preempted: $(cat "$OUTPUT_DIR/preempted.json"); requeueing (resume_from_checkpoint: auto)"
    scontrol requeue "$SLURM_JOB_ID"
    exit 0
  fi
  echo "$(date) preempted, but MAX_REQUEUES=$MAX_REQUEUES reached; not requeueing" >&2
fi
exit "$STATUS"
