#!/usr/bin/env bash
# xfer on one workstation: one rank per GPU (or, without GPUs, ranks × threads = cores), the sweep, then the report.
#
#   jobscripts/workstation.sh path/to/spec.toml [ranks]
#
# Stop it with Ctrl-C (or kill -TERM): running trials checkpoint at their next step; run it again to resume.
set -euo pipefail
SPEC=${1:?usage: workstation.sh SPEC.toml [ranks]}
XFER=${XFER:-xfer}
gpus=0
if command -v nvidia-smi >/dev/null 2>&1; then gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true); fi
cores=$(nproc)
if [ "$gpus" -gt 0 ]; then
  ranks=${2:-$gpus}
  threads=$(( cores / ranks > 0 ? cores / ranks : 1 ))
else
  ranks=${2:-$(( cores >= 4 ? cores / 2 : 1 ))}
  threads=$(( cores / ranks > 0 ? cores / ranks : 1 ))
fi
echo "[xfer] $ranks rank(s) × $threads thread(s) on $(hostname) ($gpus GPU(s), $cores cores)"
export OMP_NUM_THREADS=$threads OMP_WAIT_POLICY=PASSIVE
[ "$(id -u)" -eq 0 ] && export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# Open MPI binds each rank to one core when ranks ≤ 2; threads need room: --bind-to none.
mpirun -n "$ranks" --bind-to none --oversubscribe "$XFER" run "$SPEC" --threads "$threads"
results=$("$XFER" run "$SPEC" --dry-run --json | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["results"])')
"$XFER" report "$results"
