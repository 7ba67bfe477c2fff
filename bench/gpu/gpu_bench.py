#!/usr/bin/env python3
"""xfer's training step against PyTorch eager on one GPU: ResNet-50 and ViT-B/16 at 224 px, batch 128 (halved until it
fits), bf16 — images/s of each, their ratio, and MFU (model FLOPs × images/s ÷ the GPU's bf16 dense peak).

Both sides train the same backbone (random weights) with a fresh 10-class linear head on one synthetic batch already
on the GPU, with the same recipe: AdamW (weight_decay = wd / lr) fused, bf16 autocast over forward and loss, TF32 and
cuDNN benchmark on, channels-last for the conv net.
  xfer     build-gpu/compute_bench (bench/trainer): xfer's model::Classifier (the TorchScript backbone exported here)
           and the trainer's own step, precision plan and fused optimizer (src/train), LibTorch only
  PyTorch  this script, eager, in its own process
Model FLOPs per image = 3 × 2 × GMACs (forward, and a backward of twice its cost), GMACs at 224 px from torchvision.

Each side runs in its own process, `--repeats` times, the sides alternating (xfer first, then PyTorch first, ...);
the table gives the medians and the JSON every run.
Usage: gpu_bench.py --compute BUILD/compute_bench [--out DIR] [--batch 128] [--steps 30] [--repeats 1]
       [--peak-tflops P] [--json NAME]
       [--smoke]   (CPU, batch 2, one step: checks the plumbing where there is no GPU)
       --peak-of NAME   prints the bf16 dense peak this script assumes for a GPU of that name
Prints a Markdown table and writes DIR/gpu_bench.json (or DIR/NAME)."""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)

# bf16 dense tensor-core peaks (TFLOP/s) from NVIDIA's data sheets, matched in order against
# torch.cuda.get_device_name(): the first name contained wins, so the variants (NVL, PCIe, GH200) come before the SXM
# part whose name they contain ("NVIDIA H100 NVL" also contains "H100").
PEAKS = [("H100 NVL", 835.5), ("H100 PCIe", 756.0), ("H100", 989.4), ("GH200", 989.4), ("H200 NVL", 835.5),
         ("H200", 989.4), ("B200", 2250.0), ("A100", 312.0), ("L40S", 362.05), ("A10G", 70.0), ("L4", 121.0)]


def peak_of(gpu):
    return next((p for k, p in PEAKS if k in gpu), 0.0)


def pytorch_side(a):
    import torch
    from models import backbone
    dev = torch.device(a.device)
    torch.manual_seed(0)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True
    net, dim, _ = backbone(a.model, a.size)
    model = torch.nn.Sequential(net, torch.nn.Linear(dim, 10)).to(dev).train()
    conv = a.model != "vit_b_16"
    if conv:
        model = model.to(memory_format=torch.channels_last)
    lr, wd = 1e-3, 1e-4
    cuda = dev.type == "cuda"
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=wd / lr, **({"fused": True} if cuda else {}))
    x = torch.randn(a.batch, 3, a.size, a.size, device=dev)
    if conv:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (a.batch,), device=dev)

    def step():
        opt.zero_grad()
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=cuda):
            loss = torch.nn.functional.cross_entropy(model(x).float(), y)
        loss.backward()
        opt.step()

    def sync():
        if cuda:
            torch.cuda.synchronize()

    for _ in range(a.warmup):
        step()
    sync()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        step()
    sync()
    dt = time.perf_counter() - t0
    print(json.dumps({"side": "pytorch", "images_per_second": a.batch * a.steps / dt, "torch": torch.__version__,
                      "peak_memory_bytes": torch.cuda.max_memory_allocated() if cuda else 0}))


def run_xfer(a, name, path, batch, gmacs, peak):
    return subprocess.run([a.compute, "--backbone", path, "--size", str(a.size), "--batch", str(batch), "--steps",
                           str(a.steps), "--warmup", str(a.warmup), "--device", a.device, "--precision", "bf16",
                           "--gmacs", str(gmacs), "--peak-tflops", str(peak)], capture_output=True, text=True)


def run_pytorch(a, name, path, batch, gmacs, peak):
    return subprocess.run([sys.executable, os.path.abspath(__file__), "--pytorch-side", name, "--size", str(a.size),
                           "--batch", str(batch), "--steps", str(a.steps), "--warmup", str(a.warmup), "--device",
                           a.device], capture_output=True, text=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--compute", help="compute_bench built against this torch's LibTorch")
    ap.add_argument("--out", default="build-gpu")
    ap.add_argument("--models", default="resnet50,vit_b_16")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--peak-tflops", type=float, default=0)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--json", default="gpu_bench.json")
    ap.add_argument("--peak-of", dest="peak_of")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--pytorch-side", dest="model", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.peak_of:
        return print(peak_of(a.peak_of))
    if a.smoke:
        a.device, a.batch, a.steps, a.warmup = "cpu", 2, 1, 1
    if a.model:
        return pytorch_side(a)
    import torch
    from models import GMACS_224, backbone
    os.makedirs(a.out, exist_ok=True)
    gpu = "cpu"
    peak = a.peak_tflops
    if a.device.startswith("cuda"):
        if not torch.cuda.is_available():
            sys.exit("gpu_bench: torch sees no GPU (use --smoke for the CPU plumbing check)")
        gpu = torch.cuda.get_device_name()
        if not peak:
            peak = peak_of(gpu)
    rows = []
    for name in a.models.split(","):
        net, dim, source = backbone(name, a.size)
        path = os.path.join(a.out, name + ".pt")
        torch.jit.script(net.train()).save(path)
        gmacs = GMACS_224[name] * (a.size / 224.0) ** 2
        batch = a.batch
        while True:
            xs, ps, failed = [], [], None
            for r in range(a.repeats):
                for side in (("xfer", "pytorch") if r % 2 == 0 else ("pytorch", "xfer")):
                    run = (run_xfer if side == "xfer" else run_pytorch)(a, name, path, batch, gmacs, peak)
                    if run.returncode != 0:
                        failed = (side, run)
                        break
                    (xs if side == "xfer" else ps).append(json.loads(run.stdout.strip().splitlines()[-1]))
                if failed:
                    break
            if failed and "out of memory" in failed[1].stderr and batch > 8:
                batch //= 2
                continue
            if failed:
                sys.exit(f"the {failed[0]} side failed for {name}:\n{failed[1].stderr[-3000:]}")
            break
        med = (lambda runs: statistics.median(r["images_per_second"] for r in runs))
        xr = dict(xs[-1], images_per_second=med(xs))
        pr = dict(ps[-1], images_per_second=med(ps))
        flops = 3 * 2 * gmacs * 1e9
        mfu = (lambda ips: ips * flops / (peak * 1e12) if peak else float("nan"))
        rows.append(dict(model=name, source=source, size=a.size, batch=batch, xfer=xr["images_per_second"],
                         pytorch=pr["images_per_second"], ratio=xr["images_per_second"] / pr["images_per_second"],
                         mfu_xfer=mfu(xr["images_per_second"]), mfu_pytorch=mfu(pr["images_per_second"]),
                         fused=xr.get("fused_optimizer"), xfer_peak_gib=xr["peak_memory_bytes"] / 2**30,
                         pytorch_peak_gib=pr["peak_memory_bytes"] / 2**30, torch=pr["torch"],
                         xfer_runs=[r["images_per_second"] for r in xs],
                         pytorch_runs=[r["images_per_second"] for r in ps]))
        print(f"# {name}: xfer {rows[-1]['xfer']:.0f} img/s, PyTorch {rows[-1]['pytorch']:.0f} img/s", file=sys.stderr,
              flush=True)
    print(f"GPU: {gpu}; bf16 dense peak {peak or 'unknown'} TFLOP/s; torch {rows[0]['torch']}; {a.steps} timed steps "
          f"after {a.warmup}; median of {a.repeats} run(s) per side, sides alternating")
    print("| model | px | batch | xfer img/s | PyTorch eager img/s | xfer / PyTorch | MFU xfer | MFU PyTorch | "
          "peak GiB xfer / PyTorch |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['size']} | {r['batch']} | {r['xfer']:.0f} | {r['pytorch']:.0f} | {r['ratio']:.3f}× | "
              f"{100 * r['mfu_xfer']:.1f} % | {100 * r['mfu_pytorch']:.1f} % | {r['xfer_peak_gib']:.1f} / "
              f"{r['pytorch_peak_gib']:.1f} |")
    with open(os.path.join(a.out, a.json), "w") as f:
        json.dump({"gpu": gpu, "peak_tflops": peak, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
