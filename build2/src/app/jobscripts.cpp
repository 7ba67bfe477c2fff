// Generated from jobscripts/*.sbatch by src/app/CMakeLists.txt.
#include "jobscripts.hpp"
#include <map>
#include "xfer/core/error.hpp"
namespace xfer::app {
std::string jobscript_body(const std::string& name) {
  static const std::map<std::string, std::string> kBodies = {
    {"one_node", R"XFERJOBSCRIPT(set -euo pipefail
SPEC=${SPEC:-${1:?usage: sbatch one_node.sbatch SPEC.toml}}
XFER=${XFER:-xfer}

# Site environment: modules, a CUDA LibTorch on LD_LIBRARY_PATH, where data and backbones live.
# module load gcc openmpi cuda
# export XFER_DATA=/scratch/$USER/datasets XFER_MODELS=/scratch/$USER/backbones
export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}
export OMP_WAIT_POLICY=PASSIVE

echo "[xfer] job ${SLURM_JOB_ID:-?} on $(hostname): ${SLURM_NTASKS:-1} rank(s), restart ${SLURM_RESTART_COUNT:-0}"
# Each rank picks GPU (local rank mod visible GPUs); SLURM sets CUDA_VISIBLE_DEVICES for the job.
srun --mpi=pmix "$XFER" run "$SPEC"
"$XFER" report "$("$XFER" run "$SPEC" --dry-run --json | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["results"])')" \
  || echo "[xfer] report not written (see above); the results file is complete"
)XFERJOBSCRIPT"},
    {"multi_node", R"XFERJOBSCRIPT(set -euo pipefail
SPEC=${SPEC:-${1:?usage: sbatch multi_node.sbatch SPEC.toml}}
XFER=${XFER:-xfer}

# module load gcc openmpi cuda
# export XFER_DATA=/scratch/$USER/datasets XFER_MODELS=/scratch/$USER/backbones
export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}
export OMP_WAIT_POLICY=PASSIVE

echo "[xfer] job ${SLURM_JOB_ID:-?}: ${SLURM_NNODES:-1} node(s) ${SLURM_JOB_NODELIST:-}, ${SLURM_NTASKS:-1} rank(s)"
# srun starts the ranks through PMIx (Debian's Open MPI has no PMI-1/2). Without srun's PMIx:
#   mpirun --map-by ppr:${SLURM_NTASKS_PER_NODE}:node "$XFER" run "$SPEC"
srun --mpi=pmix "$XFER" run "$SPEC"
)XFERJOBSCRIPT"},
    {"preemptible", R"XFERJOBSCRIPT(set -uo pipefail
SPEC=${SPEC:-${1:?usage: sbatch preemptible.sbatch SPEC.toml}}
XFER=${XFER:-xfer}

# module load gcc openmpi cuda
export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}
export OMP_WAIT_POLICY=PASSIVE

echo "[xfer] job ${SLURM_JOB_ID:-?} start $(date -u +%FT%TZ), restart ${SLURM_RESTART_COUNT:-0}"
# Progress = epochs finished over all trials; a run that finished none is not requeued forever.
progress() { "$XFER" status "$SPEC" --json 2>/dev/null | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["epochs_done"])' 2>/dev/null || echo 0; }
before=$(progress)
step=
forward() {
  echo "[xfer] $1 received at $(date -u +%FT%TZ): the sweep checkpoints and stops"
  [ -n "$step" ] && kill -USR2 "$step" 2>/dev/null
}
trap 'forward USR2' USR2
trap 'forward TERM' TERM
# The sweep also stops on its own before the end of the allocation (--grace seconds, at most a fifth of the job),
# should the warning signal never come.
srun --mpi=pmix "$XFER" run "$SPEC" --grace "${XFER_GRACE:-240}" &
step=$!
# `wait` returns when a trapped signal arrives; wait again for the sweep to finish its checkpoints.
while true; do
  wait "$step"
  status=$?
  kill -0 "$step" 2>/dev/null || break
done
after=$(progress)
echo "[xfer] sweep exited with $status at $(date -u +%FT%TZ); epochs finished: $before → $after"
remaining=$("$XFER" run "$SPEC" --dry-run --json | /usr/bin/python3 -c 'import json,sys; print(len(json.load(sys.stdin)["would_run"]))')
if [ "$remaining" -gt 0 ] && [ -n "${SLURM_JOB_ID:-}" ]; then
  # Requeue while work remains — unless runs keep ending with nothing finished (a time limit shorter than an
  # epoch, a broken node): then stop and say so rather than loop in the queue.
  if [ "$after" -gt "$before" ] || [ "${SLURM_RESTART_COUNT:-0}" -lt "${XFER_IDLE_REQUEUES:-3}" ]; then
    echo "[xfer] $remaining trial(s) left: requeueing job $SLURM_JOB_ID"
    scontrol requeue "$SLURM_JOB_ID"
  else
    echo "[xfer] $remaining trial(s) left, but this run finished no epoch: not requeueing. Check \`xfer status $SPEC\`" \
         "and the time limit against one epoch; resubmit to continue (nothing is lost)."
    exit 1
  fi
fi
exit 0
)XFERJOBSCRIPT"},
    {"array", R"XFERJOBSCRIPT(set -euo pipefail
SPEC=${SPEC:-${1:?usage: sbatch array.sbatch SPEC.toml}}
XFER=${XFER:-xfer}

# module load gcc openmpi cuda
export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}
export OMP_WAIT_POLICY=PASSIVE

# Shard i of K: the task's offset in the array (--array=0-9 or 1-10 alike), K its size. To rerun one shard alone,
# give K explicitly: sbatch --array=3 --export=ALL,XFER_SHARDS=10 array.sbatch SPEC (the task id is then the shard).
shard=${SLURM_ARRAY_TASK_ID:?this script runs as a job array}
if [ -n "${XFER_SHARDS:-}" ]; then
  count=$XFER_SHARDS
else
  count=${SLURM_ARRAY_TASK_COUNT:?this script runs as a job array}
  shard=$((shard - ${SLURM_ARRAY_TASK_MIN:-0}))
fi
echo "[xfer] array job ${SLURM_ARRAY_JOB_ID:-?}, shard $shard of $count"
srun --mpi=pmix "$XFER" run "$SPEC" --shard "$shard/$count"
)XFERJOBSCRIPT"},
  };
  auto it = kBodies.find(name);
  if (it == kBodies.end()) throw Error("no job script template " + name);
  return it->second;
}
}  // namespace xfer::app
