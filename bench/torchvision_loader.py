#!/usr/bin/python3
"""The torchvision side of bench/loader_bench.cpp: ImageFolder + RandomResizedCrop(S, scale=(0.65, 1)) +
RandomHorizontalFlip + ToTensor + Normalize through a DataLoader with W workers, batch B, shuffled — the paper's
training input pipeline. Iterates E epochs after one warm-up epoch; prints images/s and the peak RSS (MiB) of the
main process plus its workers. Usage: torchvision_loader.py ROOT WORKERS BATCH EPOCHS S"""
import os
import sys
import time

import torch
import torchvision
import torchvision.transforms as T

root, workers, batch, epochs, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
torch.set_num_threads(1)
tf = T.Compose([T.RandomResizedCrop(size, scale=(0.65, 1.0)), T.RandomHorizontalFlip(), T.ToTensor(),
                T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
ds = torchvision.datasets.ImageFolder(root, transform=tf)
dl = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers, persistent_workers=True)


def peak_rss_mib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


for _ in dl:  # warm-up: workers started, files in the page cache
    pass
t0 = time.perf_counter()
n = 0
for _ in range(epochs):
    for x, y in dl:
        n += x.shape[0]
dt = time.perf_counter() - t0
rss = peak_rss_mib(os.getpid()) + sum(peak_rss_mib(w.pid) for w in dl._iterator._workers)
print(f"{n / dt:.2f} {rss:.1f}")
