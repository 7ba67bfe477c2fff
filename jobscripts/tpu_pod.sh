#!/usr/bin/env bash
# xfer on a Cloud TPU pod slice (several TPU VM hosts) through PJRT: one xfer process per host, all hosts in one MPI
# job sharing the sweep. Two ways to use the slice, chosen by the spec's ranks_per_trial (SPAN below):
#   slice  ranks_per_trial = the hosts: every trial is ONE SPMD program over all the slice's chips
#          (tools/export_pjrt.py --devices <hosts × chips>). The processes form one PJRT client across the hosts:
#          libtpu builds the slice from the TPU VM's environment, and xfer hands it the rank group's key-value store
#          (served over MPI by group rank 0). Each process feeds its own chips its rank's share of every batch;
#          XLA's all-reduce runs over ICI inside the program.
#   host   ranks_per_trial = 1: each host is its own slice (TPU_PROCESS_BOUNDS=1,1,1), each trial an SPMD program over
#          one host's chips (--devices <chips per host>); the hosts run different trials of the grid.
# Start it on worker 0 after copying xfer, the spec and the data to every worker (same paths):
#
#   gcloud compute tpus tpu-vm ssh NAME --zone ZONE --worker=all --command "pip install libtpu"
#   jobscripts/tpu_pod.sh path/to/spec.toml hosts.txt [chips per host]    # hosts.txt: the workers' internal IPs
#
# UNVERIFIED: it has not run on a TPU pod (README, "PJRT"); the key-value store and the multi-process execution path
# are tested on CPU only (a CPU plugin cannot form a client across processes).
### xfer:body — `xfer submit --tpu-chips --tpu-hosts` keeps everything below and writes its own variables above.
set -euo pipefail
SPEC=${SPEC:-${1:?usage: tpu_pod.sh SPEC.toml HOSTFILE [chips per host]}}
HOSTFILE=${HOSTFILE:-${2:?usage: tpu_pod.sh SPEC.toml HOSTFILE [chips per host]}}
XFER=${XFER:-xfer}
PLUGIN=${XFER_PJRT_PLUGIN:-$(python3 -c 'import libtpu, os; print(os.path.join(os.path.dirname(libtpu.__file__), "libtpu.so"))')}
CHIPS=${CHIPS:-${3:-$(ls /dev/accel* 2>/dev/null | wc -l)}}
HOSTS=${HOSTS:-$(grep -c . "$HOSTFILE")}
SPAN=${SPAN:-slice}
[ "$CHIPS" -ge 1 ] || { echo "[xfer] no TPU chips found (/dev/accel*); pass the count per host" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] && export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
case "$SPAN" in
  slice)
    echo "[xfer] $HOSTS host(s) × 1 process, one SPMD program over $((HOSTS * CHIPS)) chips per trial; plugin $PLUGIN"
    # libtpu's own view of the slice (TPU_WORKER_ID, TPU_WORKER_HOSTNAMES from the VM's metadata): no bounds set here.
    envs=() ;;
  host)
    echo "[xfer] $HOSTS host(s) × 1 process, each an SPMD group of $CHIPS chip(s); plugin $PLUGIN"
    # All of a host's chips as one single-process slice: bounds from the chip count (2x2 for 4 chips, 2x4 for 8).
    case "$CHIPS" in
      1) bounds=1,1,1 ;; 2) bounds=1,2,1 ;; 4) bounds=2,2,1 ;; 8) bounds=2,4,1 ;;
      *) echo "[xfer] $CHIPS chips per host: set TPU_CHIPS_PER_PROCESS_BOUNDS yourself" >&2; bounds=${TPU_CHIPS_PER_PROCESS_BOUNDS:?} ;;
    esac
    export TPU_CHIPS_PER_PROCESS_BOUNDS=$bounds TPU_PROCESS_BOUNDS=1,1,1 XFER_PJRT_DEVICES=$CHIPS
    envs=(-x TPU_CHIPS_PER_PROCESS_BOUNDS -x TPU_PROCESS_BOUNDS -x XFER_PJRT_DEVICES) ;;
  *) echo "[xfer] SPAN=$SPAN: slice or host" >&2; exit 2 ;;
esac
# Ctrl-C, kill -TERM and SIGHUP on this script reach mpirun as SIGUSR2, which it forwards at once (it forwards neither
# SIGINT nor SIGTERM: it kills the ranks a second later): running trials checkpoint, the exit status is xfer's (75).
# mpirun runs in a session of its own so that the terminal's Ctrl-C reaches only this script (jobscripts/workstation.sh).
setsid mpirun -n "$HOSTS" --hostfile "$HOSTFILE" --map-by ppr:1:node --bind-to none "${envs[@]}" -x XFER_PJRT_ARTIFACTS \
  "$XFER" run "$SPEC" --device "pjrt:$PLUGIN" --threads "$(nproc)" &
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
