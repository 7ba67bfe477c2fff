#!/usr/bin/python3
"""The paper's training step in plain PyTorch (python3-torch), replaying xfer's batches, for parity checks.

    train_ref.py BACKBONE.pt HEAD.pt STEPS.csv IMAGE_ROOT SPLITS.csv OUT.json --lr LR --wd WD --epochs E --size S
                 [--threads T] [--seed SEED] [--channels-last]

STEPS.csv is xfer's --step-log (epoch,step,lr,loss,sample ids joined by ';'). Each step's images are read from
IMAGE_ROOT/<sample id> with torchvision's evaluation transform (the --deterministic-input setting), the loss is
cross-entropy (mean), AdamW gets weight_decay = wd / lr (the paper's form), CosineAnnealingLR(T_max = epochs) steps
once per epoch. After each epoch the validation accuracy on the held-out rows of SPLITS.csv is computed. Writes
{"losses": [...], "val_accuracy": [...]}. --channels-last: convolution weights and inputs in NHWC layout, as xfer
trains by default (same values; the layout picks oneDNN's faster kernels, which round differently).
"""
import argparse
import csv
import json
import os

import torch
import torchvision.transforms as T
from PIL import Image

ap = argparse.ArgumentParser()
for name in ("backbone", "head", "steps", "root", "splits", "out"):
    ap.add_argument(name)
ap.add_argument("--lr", type=float, required=True)
ap.add_argument("--wd", type=float, required=True)
ap.add_argument("--epochs", type=int, required=True)
ap.add_argument("--size", type=int, required=True)
ap.add_argument("--threads", type=int, default=1)
ap.add_argument("--seed", type=int, default=0)
ap.add_argument("--channels-last", action="store_true")
a = ap.parse_args()
torch.set_num_threads(a.threads)
torch._C._set_graph_executor_optimize(False)  # as xfer (platform notes)

backbone = torch.jit.load(a.backbone)
head = torch.jit.load(a.head)
layout = torch.channels_last if a.channels_last else torch.contiguous_format
with torch.no_grad():
    for p in list(backbone.parameters()) + list(backbone.buffers()):
        if p.dim() == 4:
            p.data = p.data.contiguous(memory_format=layout)
tf = T.Compose([T.Resize(a.size), T.CenterCrop(a.size), T.ToTensor(),
                T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
classes = sorted(d for d in os.listdir(a.root) if os.path.isdir(os.path.join(a.root, d)))


def load(ids):
    xs, ys = [], []
    for i in ids:
        with open(os.path.join(a.root, i), "rb") as f:
            xs.append(tf(Image.open(f).convert("RGB")))
        ys.append(classes.index(i.split("/")[0]))
    return torch.stack(xs).contiguous(memory_format=layout), torch.tensor(ys)


params = list(backbone.parameters()) + list(head.parameters())
opt = torch.optim.AdamW(params, lr=a.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=a.wd / a.lr)
sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=a.epochs)
torch.manual_seed(a.seed + 1)
steps = list(csv.reader(open(a.steps)))
val_ids = [r[0] for r in list(csv.reader(open(a.splits)))[1:] if r[1] == "test"]
losses, accs = [], []
for e in range(a.epochs):
    backbone.train()
    head.train()
    for row in steps:
        if int(row[0]) != e:
            continue
        x, y = load(row[4].split(";"))
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(head(backbone(x)), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    sched.step()
    backbone.eval()
    head.eval()
    correct = 0
    with torch.no_grad():
        for k in range(0, len(val_ids), 64):
            x, y = load(val_ids[k:k + 64])
            correct += (head(backbone(x)).argmax(1) == y).sum().item()
    accs.append(correct / len(val_ids))
json.dump({"losses": losses, "val_accuracy": accs}, open(a.out, "w"))
