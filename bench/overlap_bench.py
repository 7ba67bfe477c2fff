#!/usr/bin/python3
"""A data-parallel trial's step time with its gradient sums overlapped with backward, and without, in one run.

`mpirun -n 2 xfer train` (two ranks, one torch thread each, CPU, MPI) of one trial — ResNet-18 or MobileNetV3-Small
backbones (random weights) on an ImageFolder of 256×256 JPEGs at 64 or 112 px, batch 64 (32 per rank), one epoch —
with each `--gradient-exchange`:
  overlap   DDP's buckets (1 MB first, 25 MB after, reverse order), each summed (MPI_Iallreduce) as soon as backward
            has accumulated its gradients — the default
  bucketed  the same buckets, all summed after backward
  flat      every gradient in one bucket after backward (xfer's exchange before issue 15)
Training images/s (the trial's own per-epoch figure: images over training seconds, loading waits included) →
seconds per step; the median of --repeats interleaved runs per side; ratios against flat.

Usage: overlap_bench.py BUILD_DIR [--repeats 3] [--epochs 1] [--quick]   → a Markdown table on stdout."""
import argparse
import json
import os
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_spec import export_models, make_image_folders, sh, write_trial_spec  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("build")
ap.add_argument("--repeats", type=int, default=3)
ap.add_argument("--epochs", type=int, default=1)
ap.add_argument("--quick", action="store_true", help="ResNet-18 at 64 px only")
a = ap.parse_args()
build = os.path.abspath(a.build)
xfer = os.path.join(build, "xfer")
work = os.path.join(build, "bench-overlap")
models_dir = os.path.join(build, "bench-trainer", "models")  # shared with trainer_bench.py
mpirun = ["mpirun", "--allow-run-as-root", "--oversubscribe", "--bind-to", "none", "-n", "2"]


n_train, n_test, batch = 640, 64, 64
root = os.path.join(work, "data")
make_image_folders(root, n_train, n_test)
export_models(models_dir, ["resnet18", "mobilenet_v3_small"])

env = dict(os.environ, OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE")
kinds = ["overlap", "bucketed", "flat"]
rows = []
for name, size in ((("resnet18", 64),) if a.quick else (("resnet18", 64), ("resnet18", 112), ("mobilenet_v3_small", 112))):
    spec = os.path.join(work, f"{name}-{size}.toml")
    write_trial_spec(spec, "overlap-bench", work, name, models_dir, root, a.epochs, batch, size)
    ips = {k: [] for k in kinds}
    for _ in range(a.repeats):
        for k in kinds:
            ckpt = os.path.join(work, "ckpt", f"{name}-{size}-{k}")
            subprocess.run(["rm", "-rf", ckpt])
            out = sh(mpirun + [xfer, "train", spec, "--index", "0", "--threads", "1", "--device", "cpu",
                               "--gradient-exchange", k, "--checkpoint-dir", ckpt, "--json", "--log-level", "warn"],
                     env=env)[0]
            res = json.loads(out[out.index("{"):])
            ips[k].append(statistics.mean(e["images_per_second"] for e in res["epochs"]))
    med = {k: statistics.median(v) for k, v in ips.items()}
    rows.append((name, size, med))
    print(f"# {name} {size}px: " + ", ".join(f"{k} {batch / med[k] * 1000:.0f} ms/step ({med[k]:.1f} img/s)"
                                            for k in kinds), file=sys.stderr, flush=True)

print(f"2 ranks × 1 torch thread (mpirun, CPU, MPI), batch {batch} (32 per rank), {n_train} training images, "
      f"{a.epochs} epoch(s); the median of {a.repeats} interleaved runs per side")
print("| backbone | px | overlap ms/step | bucketed ms/step | flat ms/step | overlap vs flat | bucketed vs flat |")
print("|---|---|---|---|---|---|---|")
for name, size, m in rows:
    step = {k: batch / m[k] * 1000 for k in kinds}
    print(f"| {name} | {size} | {step['overlap']:.0f} | {step['bucketed']:.0f} | {step['flat']:.0f} | "
          f"{step['flat'] / step['overlap']:.3f}× | {step['flat'] / step['bucketed']:.3f}× |")
