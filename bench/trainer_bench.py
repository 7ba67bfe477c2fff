#!/usr/bin/python3
"""Whole-trial throughput of xfer against the equivalent PyTorch script, and the pure-compute pair, in one run.

For ResNet-18 and MobileNetV3-Small backbones (random weights) at 64 and 224 px:
  end to end  `xfer train` on an ImageFolder of 256×256 JPEGs (train/ and test/) — loading, augmentation, training,
              an evaluation of the test set after every epoch, checkpoints — against bench/torch_trainer.py (the
              same recipe with torchvision's DataLoader), both timed from process start to exit, same torch threads
              and loader workers, median of --repeats interleaved runs. images/s = epochs × (train + test images) /
              wall seconds.
  compute     build/bench/compute_bench (xfer's model, LibTorch only) against bench/torch_compute.py: training
              steps on one synthetic batch, no data — as the trainer runs (channels-last, freed host memory kept
              in the heap), and again like for like with PyTorch (NCHW, glibc's default malloc): the engine's own
              overhead. Peak RSS of each (the PyTorch figure includes the Python interpreter).

Usage: trainer_bench.py BUILD_DIR [--threads 2] [--epochs 2] [--repeats 3] [--quick]   → a Markdown table on stdout."""
import argparse
import json
import os
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_spec import export_models, make_image_folders, sh, write_trial_spec  # noqa: E402

here = os.path.dirname(os.path.abspath(__file__))
ap = argparse.ArgumentParser()
ap.add_argument("build")
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--epochs", type=int, default=2)
ap.add_argument("--quick", action="store_true", help="64 px only (a smoke run)")
ap.add_argument("--repeats", type=int, default=3, help="runs per side, interleaved (the median is reported)")
a = ap.parse_args()
build = os.path.abspath(a.build)
xfer = os.path.join(build, "xfer")
compute = os.path.join(build, "bench", "compute_bench")
work = os.path.join(build, "bench-trainer")
models_dir = os.path.join(work, "models")
workers = max(1, a.threads // 2)  # xfer's default loader threads for this many torch threads
py = "/usr/bin/python3"


# Data: per input size, a train and a test folder of distinct images.
sizes = {64: (1024, 256), 224: (192, 64)}  # (train, test) images: a few minutes per side on 2 cores
for size, (n_train, n_test) in sizes.items():
    make_image_folders(os.path.join(work, f"data{size}"), n_train, n_test)
names = ["resnet18", "mobilenet_v3_small"]
export_models(models_dir, names)

env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))
rows = []
for size in ([64] if a.quick else [64, 224]):
    n_train, n_test = sizes[size]
    root = os.path.join(work, f"data{size}")
    batch = 64
    for name in names:
        spec = os.path.join(work, f"{name}-{size}.toml")
        write_trial_spec(spec, "trainer-bench", work, name, models_dir, root, a.epochs, batch, size)
        ckpt = os.path.join(work, "ckpt", f"{name}-{size}")
        images = a.epochs * (n_train + n_test)
        # End to end: the two sides interleaved, --repeats times; the median wall time of each.
        x_walls, t_walls = [], []
        for _ in range(a.repeats):
            subprocess.run(["rm", "-rf", ckpt])
            out, dt = sh([xfer, "train", spec, "--index", "0", "--threads", str(a.threads), "--device", "cpu",
                          "--checkpoint-dir", ckpt, "--json", "--log-level", "warn"], env=env)
            x_res, x_walls = json.loads(out), x_walls + [dt]
            out, dt = sh([py, os.path.join(here, "torch_trainer.py"), root, name, str(size), str(a.epochs), str(batch),
                          str(a.threads), str(workers)], env=env)
            t_res, t_walls = json.loads(out), t_walls + [dt]
        x_wall, t_wall = statistics.median(x_walls), statistics.median(t_walls)
        # Compute: the three sides interleaved, --repeats times; the median of each (this VM's noise is ±20 %).
        steps = 16 if size == 64 else 3
        meta = json.load(open(os.path.join(models_dir, name + ".json")))
        gm = meta["gmacs"] * (size / 224.0) ** 2
        bench = [compute, "--backbone", os.path.join(models_dir, name + ".pt"), "--size", str(size), "--batch",
                 str(batch), "--steps", str(steps), "--threads", str(a.threads), "--device", "cpu", "--gmacs", str(gm)]
        runs = {"cl": [], "nchw": [], "torch": []}
        mem = {}
        for _ in range(a.repeats):
            for k, cmd in (("cl", bench), ("nchw", bench + ["--contiguous", "--system-malloc"]),
                           ("torch", [py, os.path.join(here, "torch_compute.py"), name, str(size), str(batch),
                                      str(steps), str(a.threads), "cpu"])):
                res = json.loads(sh(cmd, env=env)[0])
                runs[k].append(res["images_per_second"])
                mem[k] = max(mem.get(k, 0), res["peak_memory_bytes"])
        xc, xcc, tc = (statistics.median(runs[k]) for k in ("cl", "nchw", "torch"))
        rows.append(dict(model=name, size=size, images=images, xfer_ips=images / x_wall, torch_ips=images / t_wall,
                         e2e=t_wall / x_wall, xfer_compute=xc, torch_compute=tc, compute=xc / tc,
                         xfer_contig=xcc, contig=xcc / tc, xfer_acc=x_res["test_at_best"],
                         xfer_mem=mem["cl"] / 2**20, plain_mem=mem["nchw"] / 2**20, torch_mem=mem["torch"] / 2**20,
                         torch_acc=t_res["best_accuracy"]))
        r = rows[-1]
        print(f"# {name} {size}px: end to end xfer {r['xfer_ips']:.1f} img/s ({x_wall:.1f} s) vs PyTorch "
              f"{r['torch_ips']:.1f} img/s ({t_wall:.1f} s) = {r['e2e']:.2f}x; compute {r['xfer_compute']:.1f} vs "
              f"{r['torch_compute']:.1f} img/s = {r['compute']:.2f}x (like for like {r['contig']:.2f}x)", file=sys.stderr,
              flush=True)

print(f"threads {a.threads}, loader workers {workers}, batch 64, {a.epochs} epochs, device cpu; every figure the "
      f"median of {a.repeats} interleaved runs per side")
print("| backbone | px | images | xfer img/s (end to end) | PyTorch img/s | ratio | xfer compute img/s | "
      "PyTorch compute img/s | ratio | xfer compute like for like | ratio | peak RSS xfer / like for like / PyTorch (MiB) |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    print(f"| {r['model']} | {r['size']} | {r['images']} | {r['xfer_ips']:.1f} | {r['torch_ips']:.1f} | "
          f"{r['e2e']:.2f}× | {r['xfer_compute']:.1f} | {r['torch_compute']:.1f} | {r['compute']:.2f}× | "
          f"{r['xfer_contig']:.1f} | {r['contig']:.2f}× | {r['xfer_mem']:.0f} / {r['plain_mem']:.0f} / {r['torch_mem']:.0f} |")
