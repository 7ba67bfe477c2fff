#!/usr/bin/python3
"""The sweep's scheduling quality: the paper grid's cost distribution (inputs/paper.toml, 2,280 trials, costs from the
one cost model, grid::CostModel — the numbers `xfer plan --json --list` prints, and /trials' cost_gflop, which is
what each simulated trial sleeps on) on R oversubscribed ranks with the `--simulate` executor (each trial sleeps
cost × SCALE µs, no training).

    bench/sweep_bench.py XFER RANKS SCALE OUT.h5

Reports makespan / lower bound, where the lower bound is max(total sleep / ranks, longest sleep), and the idle
rank-time per trial (dispatch overhead plus the tail), from the results file's own records.
"""
import json
import os
import subprocess
import sys
import time

import h5py
import numpy as np

xfer, ranks, scale, out = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
here = os.path.dirname(os.path.abspath(__file__))
spec = os.path.join(here, "..", "inputs", "paper.toml")
for f in (out, out + ".lock"):
    if os.path.exists(f):
        os.remove(f)
env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMP_NUM_THREADS="1")
for v in ("XFER_DATA", "XFER_MODELS"):
    env.pop(v, None)
t0 = time.time()
r = subprocess.run(["mpirun", "--oversubscribe", "--bind-to", "none", "-n", str(ranks), xfer, "run", spec,
                    "--results", out, "--simulate", str(scale), "--no-progress", "--log-level", "warn"],
                   env=env, capture_output=True, text=True)
wall = time.time() - t0
if r.returncode != 0:
    sys.exit(f"xfer run failed ({r.returncode}):\n{r.stderr[-3000:]}")
f = h5py.File(out, "r")
t = f["trials"][()]
run = f["runs"][-1]
sleep = t["cost_gflop"] * scale * 1e-6
makespan = run["finished_at"] - run["started_at"]
bound = max(sleep.sum() / ranks, sleep.max())
idle_per_trial = (ranks * makespan - t["seconds"].sum()) / len(t)
res = {"ranks": ranks, "trials": int(len(t)), "done": int((t["status"] == b"done").sum()),
       "total_sleep_s": float(sleep.sum()), "longest_trial_s": float(sleep.max()),
       "makespan_s": float(makespan), "lower_bound_s": float(bound), "ratio": float(makespan / bound),
       "idle_rank_seconds_per_trial": float(idle_per_trial),
       "mean_overrun_per_trial_s": float((t["seconds"] - sleep).mean()), "wall_s_including_startup": wall}
print(json.dumps(res, indent=1))
