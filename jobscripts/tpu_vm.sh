#!/usr/bin/env bash
# xfer on one Cloud TPU VM through PJRT: one rank per TPU chip, each rank an independent trial on its own chip
# (TPU_VISIBLE_CHIPS = its local rank), the sweep's scheduler handing out the grid. No SLURM on a TPU VM: run it on
# the VM (under tmux/nohup); Ctrl-C or kill -TERM checkpoints the running trials, running it again resumes.
#
#   pip install libtpu                                   # Google's TPU runtime (its licence: not shipped with xfer)
#   jobscripts/tpu_vm.sh path/to/spec.toml [chips]
#
# Every model of the spec needs its exported programs (tools/export_pjrt.py --devices 1) beside its backbone
# (<backbone>.pjrt/) or under XFER_PJRT_ARTIFACTS. UNVERIFIED: written from libtpu's documented environment
# variables and PyTorch/XLA's and JAX's one-chip-per-process settings; it has not run on a TPU (README, "PJRT").
### xfer:body — `xfer submit --tpu-chips` keeps everything below and writes its own variables above.
set -euo pipefail
SPEC=${SPEC:-${1:?usage: tpu_vm.sh SPEC.toml [chips]}}
XFER=${XFER:-xfer}
# libtpu.so from the libtpu wheel, unless XFER_PJRT_PLUGIN names a plugin.
PLUGIN=${XFER_PJRT_PLUGIN:-$(python3 -c 'import libtpu, os; print(os.path.join(os.path.dirname(libtpu.__file__), "libtpu.so"))')}
# The chips of this VM: /dev/accel* (v4, v5e, v5p, v6e) or /dev/vfio/<n> (some newer images).
count_chips() { ls /dev/accel* 2>/dev/null | wc -l; }
CHIPS=${CHIPS:-${2:-$(count_chips)}}
[ "$CHIPS" -ge 1 ] || { echo "[xfer] no TPU chips found (/dev/accel*); pass the count as the second argument" >&2; exit 2; }
echo "[xfer] $CHIPS rank(s), one per TPU chip, on $(hostname); plugin $PLUGIN"

# One rank per chip: each process sees only its chip as a one-chip slice (what PyTorch/XLA's
# configure_one_chip_topology and JAX's parallel test runner set), with its own port for libtpu's runtime.
cat > "${TMPDIR:-/tmp}/xfer-tpu-rank.sh" <<'RANK'
#!/usr/bin/env bash
r=${OMPI_COMM_WORLD_LOCAL_RANK:?run under mpirun}
export TPU_VISIBLE_CHIPS=$r TPU_CHIPS_PER_PROCESS_BOUNDS=1,1,1 TPU_PROCESS_BOUNDS=1,1,1
export TPU_PROCESS_PORT=$((8476 + r)) TPU_PROCESS_ADDRESSES=localhost:$((8476 + r)) ALLOW_MULTIPLE_LIBTPU_LOAD=1
exec "$@"
RANK
chmod +x "${TMPDIR:-/tmp}/xfer-tpu-rank.sh"
[ "$(id -u)" -eq 0 ] && export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# The host's cores feed the chips' input pipelines: split them over the ranks.
threads=$(( $(nproc) / CHIPS > 0 ? $(nproc) / CHIPS : 1 ))
# Ctrl-C, kill -TERM and SIGHUP on this script reach mpirun as SIGUSR2, which it forwards at once (it forwards neither
# SIGINT nor SIGTERM: it kills the ranks a second later): running trials checkpoint, the exit status is xfer's (75).
# mpirun runs in a session of its own so that the terminal's Ctrl-C reaches only this script (jobscripts/workstation.sh).
XFER_PJRT_DEVICES=1 setsid mpirun -n "$CHIPS" --bind-to none -x XFER_PJRT_DEVICES -x XFER_PJRT_ARTIFACTS \
  "${TMPDIR:-/tmp}/xfer-tpu-rank.sh" "$XFER" run "$SPEC" --device "pjrt:$PLUGIN" --threads "$threads" &
mpirun_pid=$!
trap 'kill -USR2 "$mpirun_pid" 2>/dev/null || true' INT TERM HUP
status=0
while true; do
  wait "$mpirun_pid" && status=0 || status=$?
  kill -0 "$mpirun_pid" 2>/dev/null || break  # wait returned for a trapped signal: mpirun is still stopping
done
trap - INT TERM HUP
[ "$status" -eq 0 ] || exit "$status"
"$XFER" report "$("$XFER" run "$SPEC" --dry-run --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["results"])')" \
  || echo "[xfer] report not written (see above); the results file is complete"
