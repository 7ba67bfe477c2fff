#!/usr/bin/python3
"""The PyTorch side of bench/trainer/compute_bench.cpp: a torchvision model (eager, random init) with a fresh linear
head, AdamW with weight_decay = wd / lr, trained on one synthetic batch already on the device; bf16 autocast on CUDA.
Usage: torch_compute.py MODEL SIZE BATCH STEPS THREADS [DEVICE] → one JSON line (images/s)."""
import resource
import json
import sys
import time

import torch
import torchvision

name, size, batch, steps, threads = sys.argv[1], *map(int, sys.argv[2:6])
device = torch.device(sys.argv[6] if len(sys.argv) > 6 else ("cuda" if torch.cuda.is_available() else "cpu"))
torch.set_num_threads(threads)
torch.manual_seed(0)
net = getattr(torchvision.models, name)()
if hasattr(net, "fc"):
    dim, net.fc = net.fc.in_features, torch.nn.Identity()
else:
    dim, net.classifier[-1] = net.classifier[-1].in_features, torch.nn.Identity()
model = torch.nn.Sequential(net, torch.nn.Linear(dim, 10)).to(device).train()
lr, wd = 1e-3, 1e-4
opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=wd / lr)
x = torch.randn(batch, 3, size, size, device=device)
y = torch.randint(0, 10, (batch,), device=device)
amp = device.type == "cuda"


def step():
    opt.zero_grad()
    if amp:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = model(x)
    else:
        logits = model(x)
    torch.nn.functional.cross_entropy(logits.float(), y).backward()
    opt.step()


def sync():
    if device.type == "cuda":
        torch.cuda.synchronize()


for _ in range(3):
    step()
sync()
t0 = time.perf_counter()
for _ in range(steps):
    step()
sync()
dt = time.perf_counter() - t0
peak = (torch.cuda.max_memory_allocated() if device.type == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
print(json.dumps({"side": "pytorch", "device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads(),
                  "size": size, "batch": batch, "steps": steps, "images_per_second": batch * steps / dt,
                  "peak_memory_bytes": peak}))
