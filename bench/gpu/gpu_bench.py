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

Usage: gpu_bench.py --compute BUILD/compute_bench [--out DIR] [--batch 128] [--steps 30] [--peak-tflops P]
       [--smoke]   (CPU, batch 2, one step: checks the plumbing where there is no GPU)
Prints a Markdown table and writes DIR/gpu_bench.json."""
import argparse
import json
import os
import subprocess
import sys
import time

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)

# bf16 dense tensor-core peaks (TFLOP/s) from NVIDIA's data sheets, matched against torch.cuda.get_device_name().
PEAKS = [("H100 PCIe", 756.0), ("H100", 989.4), ("H200", 989.4), ("GH200", 989.4), ("B200", 2250.0),
         ("A100", 312.0), ("L40S", 362.05), ("A10G", 70.0), ("L4", 121.0)]


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
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--pytorch-side", dest="model", help=argparse.SUPPRESS)
    a = ap.parse_args()
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
            peak = next((p for k, p in PEAKS if k in gpu), 0.0)
    rows = []
    for name in a.models.split(","):
        net, dim, source = backbone(name, a.size)
        path = os.path.join(a.out, name + ".pt")
        torch.jit.script(net.train()).save(path)
        gmacs = GMACS_224[name] * (a.size / 224.0) ** 2
        batch = a.batch
        while True:
            x = subprocess.run([a.compute, "--backbone", path, "--size", str(a.size), "--batch", str(batch), "--steps",
                                str(a.steps), "--warmup", str(a.warmup), "--device", a.device, "--precision", "bf16",
                                "--gmacs", str(gmacs), "--peak-tflops", str(peak)], capture_output=True, text=True)
            if x.returncode != 0 and "out of memory" in x.stderr and batch > 8:
                batch //= 2
                continue
            if x.returncode != 0:
                sys.exit(f"compute_bench failed for {name}:\n{x.stderr[-3000:]}")
            p = subprocess.run([sys.executable, os.path.abspath(__file__), "--pytorch-side", name, "--size", str(a.size),
                                "--batch", str(batch), "--steps", str(a.steps), "--warmup", str(a.warmup), "--device",
                                a.device], capture_output=True, text=True)
            if p.returncode != 0 and "out of memory" in p.stderr and batch > 8:
                batch //= 2
                continue
            if p.returncode != 0:
                sys.exit(f"the PyTorch side failed for {name}:\n{p.stderr[-3000:]}")
            break
        xr, pr = json.loads(x.stdout.strip().splitlines()[-1]), json.loads(p.stdout.strip().splitlines()[-1])
        flops = 3 * 2 * gmacs * 1e9
        mfu = (lambda ips: ips * flops / (peak * 1e12) if peak else float("nan"))
        rows.append(dict(model=name, source=source, size=a.size, batch=batch, xfer=xr["images_per_second"],
                         pytorch=pr["images_per_second"], ratio=xr["images_per_second"] / pr["images_per_second"],
                         mfu_xfer=mfu(xr["images_per_second"]), mfu_pytorch=mfu(pr["images_per_second"]),
                         fused=xr.get("fused_optimizer"), xfer_peak_gib=xr["peak_memory_bytes"] / 2**30,
                         pytorch_peak_gib=pr["peak_memory_bytes"] / 2**30, torch=pr["torch"]))
        print(f"# {name}: xfer {rows[-1]['xfer']:.0f} img/s, PyTorch {rows[-1]['pytorch']:.0f} img/s", file=sys.stderr,
              flush=True)
    print(f"GPU: {gpu}; bf16 dense peak {peak or 'unknown'} TFLOP/s; torch {rows[0]['torch']}; {a.steps} timed steps "
          f"after {a.warmup}")
    print("| model | px | batch | xfer img/s | PyTorch eager img/s | xfer / PyTorch | MFU xfer | MFU PyTorch | "
          "peak GiB xfer / PyTorch |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['size']} | {r['batch']} | {r['xfer']:.0f} | {r['pytorch']:.0f} | {r['ratio']:.3f}× | "
              f"{100 * r['mfu_xfer']:.1f} % | {100 * r['mfu_pytorch']:.1f} % | {r['xfer_peak_gib']:.1f} / "
              f"{r['pytorch_peak_gib']:.1f} |")
    with open(os.path.join(a.out, "gpu_bench.json"), "w") as f:
        json.dump({"gpu": gpu, "peak_tflops": peak, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
