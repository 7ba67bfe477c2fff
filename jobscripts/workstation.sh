#!/usr/bin/env bash
# xfer on one workstation: one rank per GPU (or, without GPUs, ranks × threads = cores), the sweep, then the report.
#
#   jobscripts/workstation.sh path/to/spec.toml [ranks]
#
# Stop it with Ctrl-C (or kill -TERM on this script): running trials checkpoint at their next step, the exit status is
# 75, and running it again resumes.
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
# Stopping. Open MPI's mpirun does not forward SIGINT or SIGTERM: it sends the ranks SIGCONT, then SIGTERM
# odls_base_sigkill_timeout seconds later (default 1), then SIGKILL as long again — too soon to checkpoint, and
# mpirun then exits 1. It does forward SIGUSR2 at once, on which xfer stops like on SIGTERM. So mpirun runs in a
# session of its own (the terminal's Ctrl-C reaches only this script), and this script turns Ctrl-C, SIGTERM (a
# `kill`, SLURM's scancel) and SIGHUP into SIGUSR2 for mpirun: running trials checkpoint, the lock is released, and
# the exit status is xfer's (75: rerun to resume). (A signal sent to mpirun itself: xfer starts stopping on mpirun's
# SIGCONT, but has 2 × odls_base_sigkill_timeout seconds before the SIGKILL; a longer timeout also makes mpirun
# linger as long after any rank's non-zero exit, so it is left at Open MPI's default here. README, "On a workstation".)
# Open MPI binds each rank to one core when ranks ≤ 2; threads need room: --bind-to none.
setsid mpirun -n "$ranks" --bind-to none --oversubscribe "$XFER" run "$SPEC" --threads "$threads" &
mpirun_pid=$!
trap 'kill -USR2 "$mpirun_pid" 2>/dev/null || true' INT TERM HUP
status=0
while true; do
  wait "$mpirun_pid" && status=0 || status=$?
  kill -0 "$mpirun_pid" 2>/dev/null || break  # wait returned for a trapped signal: mpirun is still stopping
done
trap - INT TERM HUP
[ "$status" -eq 0 ] || exit "$status"
results=$("$XFER" run "$SPEC" --dry-run --json | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["results"])')
"$XFER" report "$results"
