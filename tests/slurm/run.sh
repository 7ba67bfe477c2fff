#!/usr/bin/env bash
# The job scripts against a real SLURM (one machine, two emulated nodes with fake GPUs), end to end:
#   (a) one node, two ranks           (b) two nodes, one rank each
#   arrays: three shards + xfer merge hold the same trials and values as (a)
#   xfer submit: a one-node job and a three-shard array with its merge job, submitted for real without waiting
#   the workstation script (mpirun, no SLURM)
#   preemption: scancel --signal=USR2 -b mid-sweep → checkpoint, requeue, the restart finishes
#   a real time limit: --time=1 with --signal=B:USR2@10 → stop before the limit, checkpoint, requeue
# Every results file is checked with h5py (tests/reference/check_results.py): each trial exactly once.
#   tests/slurm/run.sh BUILD_DIR [SOURCE_DIR]
set -euo pipefail
build=$(readlink -f "${1:?usage: run.sh BUILD_DIR [SOURCE_DIR]}")
src=$(readlink -f "${2:-$(dirname "$0")/../..}")
[ "$(id -u)" -eq 0 ] || { echo "run.sh: needs root to start slurmd (as on the CI machines)" >&2; exit 1; }
work=$(mktemp -d "$build/tests/slurm.XXXXXX")
cluster=$work/cluster
cleanup() {
  "$src/tests/slurm/cluster.sh" down "$cluster" || true
  if [ "${KEEP:-0}" != 1 ] && [ "${failed:-1}" = 0 ]; then rm -rf "$work"; fi
}
trap cleanup EXIT
failed=1
t0=$SECONDS
log() { printf '[slurm-test %3ds] %s\n' $((SECONDS - t0)) "$*"; }
fail() { log "FAIL: $*"; exit 1; }

"$src/tests/slurm/cluster.sh" up "$cluster" 2
source "$cluster/env.sh"
export XFER=$build/xfer OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
log "SLURM up: $(sinfo -h -N -o '%N:%t' | tr '\n' ' ')"
/usr/bin/python3 "$src/tests/fixtures/make_datasets.py" "$work/data" >/dev/null
models=$build/test-models
[ -f "$models/shufflenet_v2_x0_5.pt" ] || /usr/bin/python3 "$src/tools/export_backbones.py" shufflenet_v2_x0_5 squeezenet1_1 --random-init --out "$models" >/dev/null

spec() {  # spec NAME EPOCHS LRS
  cat > "$work/$1.toml" <<TOML
[study]
name = "$1"
results = "$work/$1/results.h5"
[[model]]
name = "shufflenet_v2_x0_5"
backbone = "$models/shufflenet_v2_x0_5.pt"
[[model]]
name = "squeezenet1_1"
backbone = "$models/squeezenet1_1.pt"
[[dataset]]
name = "eurosat"
kind = "eurosat"
root = "$work/data/eurosat"
input_size = 32
[grid]
epochs = $2
batch_size = 32
input_size = 32
weight_decays = [1e-4]
[[grid.optimizer]]
family = "adamw"
lrs = [$3]
TOML
}

check() {  # check RESULTS TRIALS EPOCHS → prints the JSON; fails unless every trial is done exactly once
  local j
  j=$(/usr/bin/python3 "$src/tests/reference/check_results.py" "$1")
  /usr/bin/python3 - "$j" "$2" "$3" <<'PY' || fail "$1: $j"
import json, sys
j, n, e = json.loads(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
assert j["trials"] == n and j["unique_keys"] == n, j
assert j["status"] == {"done": n}, j["status"]
assert j["attempts"] == {"1": n}, j["attempts"]
assert j["duplicate_curve_rows"] == 0
assert all(len(v) == e for v in j["epochs_per_trial"].values()), j["epochs_per_trial"]
assert j["prediction_sets"] == j["prediction_sets_unique"] == n and j["predictions_valid"]
PY
  echo "$j"
}

job_state() { scontrol show job "$1" 2>/dev/null | grep -o 'JobState=[A-Z_]*' | cut -d= -f2; }
restarts() { scontrol show job "$1" 2>/dev/null | grep -o 'Restarts=[0-9]*' | cut -d= -f2; }
wait_done() {  # wait_done JOB SECONDS: until the job has completed after all its requeues
  local deadline=$((SECONDS + $2))
  while [ $SECONDS -lt $deadline ]; do
    case "$(job_state "$1")" in
      COMPLETED) return 0 ;;
      FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY|BOOT_FAIL|DEADLINE) fail "job $1 ended $(job_state "$1")" ;;
    esac
    sleep 2
  done
  fail "job $1 not finished after $2 s (state $(job_state "$1"))"
}

# (a) one node, two ranks bound to two (fake) GPUs.
spec a 1 "1e-3, 1e-4"
sbatch --wait --nodes=1 --ntasks-per-node=2 --gpus-per-node=2 --cpus-per-task=1 -o "$work/a.out" \
  "$src/jobscripts/one_node.sbatch" "$work/a.toml" >/dev/null || fail "(a) job failed: $(tail -5 "$work/a.out")"
grep -q "2 rank(s)" "$work/a.out" || fail "(a) did not run two ranks"
check "$work/a/results.h5" 4 1 >/dev/null
log "(a) one node × 2 ranks: 4 trials, each exactly once"

# (b) two emulated nodes, one rank each.
spec b 1 "1e-3, 1e-4"
sbatch --wait --nodes=2 --ntasks-per-node=1 --gpus-per-node=1 --cpus-per-task=1 -o "$work/b.out" \
  "$src/jobscripts/multi_node.sbatch" "$work/b.toml" >/dev/null || fail "(b) job failed: $(tail -5 "$work/b.out")"
grep -q "2 node(s)" "$work/b.out" || fail "(b) did not span two nodes: $(head -3 "$work/b.out")"
check "$work/b/results.h5" 4 1 >/dev/null
log "(b) two nodes: 4 trials, each exactly once"

# (d) a job array of three shards, then xfer merge: the same trials and values as (a).
cp "$work/a.toml" "$work/d.toml"
sed -i "s|$work/a/results.h5|$work/d/results.h5|" "$work/d.toml"
sbatch --wait --array=0-2 --nodes=1 --ntasks-per-node=1 --gpus-per-node=1 --cpus-per-task=1 -o "$work/d-%a.out" \
  "$src/jobscripts/array.sbatch" "$work/d.toml" >/dev/null || fail "array job failed: $(cat "$work"/d-*.out | tail -5)"
"$XFER" merge "$work/d/merged.h5" "$work"/d/results.shard-*-of-3.h5 || fail "xfer merge"
check "$work/d/merged.h5" 4 1 >/dev/null
/usr/bin/python3 - "$work/a/results.h5" "$work/d/merged.h5" <<'PY' || fail "array + merge differs from one job"
import sys, h5py, numpy as np
a, m = (h5py.File(p, "r")["trials"][()] for p in sys.argv[1:])
ka = {r["key"]: r["test_metric"] for r in a}
km = {r["key"]: r["test_metric"] for r in m}
assert ka.keys() == km.keys(), (sorted(ka), sorted(km))
assert all(np.isclose(ka[k], km[k], rtol=0, atol=1e-12) for k in ka), (ka, km)
PY
log "(d) array of 3 shards + merge: the same 4 trials and test values as one job"

# xfer submit, for real: it returns at once with the job id; the job runs the study.
spec e 1 "1e-3, 1e-4"
out=$("$XFER" submit "$work/e.toml" --gpus-per-node 1 --cpus-per-task 1 --time 10 --xfer "$XFER") || fail "xfer submit: $out"
jid=$(sed -n 's/^submitted job \([0-9][0-9]*\) .*/\1/p' <<<"$out")
[ -n "$jid" ] || fail "xfer submit printed no job id: $out"
wait_done "$jid" 120
check "$work/e/results.h5" 4 1 >/dev/null
log "xfer submit: job $jid ran the study; 4 trials, each exactly once"
# … and a three-shard array with the merge job that waits for it.
spec f 1 "1e-3, 1e-4"
out=$("$XFER" submit "$work/f.toml" --gpus-per-node 1 --cpus-per-task 1 --time 10 --array 3 --xfer "$XFER") \
  || fail "xfer submit --array: $out"
mid=$(sed -n 's/^submitted merge job \([0-9][0-9]*\) .*/\1/p' <<<"$out")
[ -n "$mid" ] || fail "xfer submit --array printed no merge job: $out"
wait_done "$mid" 180
check "$work/f/results.h5" 4 1 >/dev/null
log "xfer submit --array 3: three shards, then the merge job ($mid) wrote the study's results file; each trial once"

# The workstation script: mpirun, no SLURM.
spec w 1 "1e-3, 1e-4"
env -u SLURM_JOB_ID "$src/jobscripts/workstation.sh" "$work/w.toml" 2 > "$work/w.out" 2>&1 || fail "workstation.sh: $(tail -5 "$work/w.out")"
grep -q "2 rank(s)" "$work/w.out" || fail "workstation.sh did not start two ranks: $(head -3 "$work/w.out")"
check "$work/w/results.h5" 4 1 >/dev/null
[ -f "$work/w/results.h5.report.html" ] || fail "workstation.sh wrote no report: $(ls "$work/w")"
log "workstation.sh: mpirun × 2, 4 trials each exactly once, report written"

# (c) preemption by signal: USR2 mid-sweep → checkpoint, requeue, the restart finishes.
spec c 6 "1e-3, 1e-4"
jid=$(sbatch --parsable --nodes=1 --ntasks-per-node=2 --gpus-per-node=2 --cpus-per-task=1 -o "$work/c.out" \
  "$src/jobscripts/preemptible.sbatch" "$work/c.toml")
deadline=$((SECONDS + 120))
until compgen -G "$work/c/results.h5.ckpt/*/epoch-*-step-*.ckpt" >/dev/null; do
  [ $SECONDS -lt $deadline ] || fail "(c) no checkpoint appeared: $(tail -5 "$work/c.out")"
  sleep 0.5
done
scancel --signal=USR2 -b "$jid"
wait_done "$jid" 240
[ "$(restarts "$jid")" -ge 1 ] || fail "(c) the job did not requeue itself"
grep -q "USR2 received" "$work/c.out" || fail "(c) the script did not see USR2"
grep -q "restart 1" "$work/c.out" || fail "(c) no restarted run (SLURM_RESTART_COUNT=1)"
c=$(check "$work/c/results.h5" 4 6)
/usr/bin/python3 -c "import json,sys; j=json.loads(sys.argv[1]); assert j['runs'] >= 2, j; assert any('signal' in r for r in j['run_end_reasons']), j" "$c" \
  || fail "(c) $c"
log "(c) USR2 mid-sweep: checkpointed, requeued (restarts $(restarts "$jid")), finished; every trial once"

# (c') a real time limit: --time=1 warns 10 s before the end. SLURM checks every 30 s, so the warning comes 10–40 s
# early (@30 on a one-minute job would fire at once); xfer itself stops 12 s before the end should none come. 4 trials
# × 1000 epochs cannot end inside the minute on any machine: the sweep stops at its checkpoints, the script requeues
# the job, and the test cancels the requeued job — finishing after a requeue is (c)'s part, and waiting for 4000 epochs
# would cost minutes of the suite.
spec t 1000 "1e-3, 1e-4"
jid=$(sbatch --parsable --time=1 --signal=B:USR2@10 --nodes=1 --ntasks-per-node=2 --gpus-per-node=2 --cpus-per-task=1 \
  -o "$work/t.out" "$src/jobscripts/preemptible.sbatch" "$work/t.toml")
deadline=$((SECONDS + 240))
until [ "$(restarts "$jid" || true)" -ge 1 ] 2>/dev/null; do
  case "$(job_state "$jid")" in
    COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY|BOOT_FAIL|DEADLINE)
      fail "(c') the job ended $(job_state "$jid") without requeueing itself: $(tail -5 "$work/t.out")" ;;
  esac
  [ $SECONDS -lt $deadline ] || fail "(c') no requeue 240 s after submitting (state $(job_state "$jid")): $(tail -5 "$work/t.out")"
  sleep 1
done
scancel "$jid"
deadline=$((SECONDS + 120))
while case "$(job_state "$jid")" in PENDING|RUNNING|COMPLETING|REQUEUED|REQUEUE_HOLD|SUSPENDED) true ;; *) false ;; esac; do
  [ $SECONDS -lt $deadline ] || fail "(c') the cancelled job still $(job_state "$jid") after 120 s"
  sleep 1
done
[ ! -e "$work/t/results.h5.lock" ] || fail "(c') the writer lock was left behind"
! compgen -G "$work/t/results.h5.ckpt/*/*.ckpt.tmp" >/dev/null || fail "(c') a half-written checkpoint was left behind"
/usr/bin/python3 - "$work/t/results.h5" <<'PY' || fail "(c') $work/t/results.h5"
import sys, h5py
with h5py.File(sys.argv[1], "r") as f:
    t, runs = f["trials"][()], f["runs"][()]
    status = [s.decode() for s in t["status"]]
    first = runs[0]["end_reason"].decode()
assert "signal" in first or "time limit" in first, ("the run that met the limit did not stop before it", first)
assert "running" not in status, status
assert "interrupted" in status, ("no trial was checkpointed and interrupted at the limit", status)
assert all(e < 1000 for e in t["epochs_done"]), list(t["epochs_done"])
PY
log "(c') --time=1: stopped before the limit ($(/usr/bin/python3 -c 'import h5py,sys; print(h5py.File(sys.argv[1])["runs"][0]["end_reason"].decode())' "$work/t/results.h5")), checkpointed, requeued (then cancelled by the test)"

failed=0
log "all SLURM scenarios passed"
