#!/usr/bin/python3
"""The PyTorch side of bench/trainer_bench.py: the script a researcher would write for one trial of the paper's
recipe. torchvision model (random init) with a fresh linear head, ImageFolder + DataLoader (RandomResizedCrop(S, scale
0.65–1) + horizontal flip for training; resize + centre crop for evaluation), AdamW with weight_decay = wd / lr,
cosine annealing per epoch, and after every epoch an evaluation of the test folder (accuracy), keeping the best
epoch. Same torch threads and loader workers as xfer.

Usage: torch_trainer.py ROOT MODEL SIZE EPOCHS BATCH THREADS WORKERS → JSON on stdout (wall seconds from the first
line of this file, images trained and evaluated, accuracy of the best epoch)."""
import time

T0 = time.perf_counter()
import json  # noqa: E402
import sys  # noqa: E402

import torch  # noqa: E402
import torchvision  # noqa: E402
import torchvision.transforms as T  # noqa: E402

root, name, size, epochs, batch, threads, workers = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:8])
torch.set_num_threads(threads)
torch.manual_seed(0)
mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
train_tf = T.Compose([T.RandomResizedCrop(size, scale=(0.65, 1.0)), T.RandomHorizontalFlip(), T.ToTensor(),
                      T.Normalize(mean, std)])
eval_tf = T.Compose([T.Resize(size), T.CenterCrop(size), T.ToTensor(), T.Normalize(mean, std)])
train_ds = torchvision.datasets.ImageFolder(f"{root}/train", transform=train_tf)
test_ds = torchvision.datasets.ImageFolder(f"{root}/test", transform=eval_tf)
kw = dict(num_workers=workers, persistent_workers=workers > 0)
train_dl = torch.utils.data.DataLoader(train_ds, batch_size=batch, shuffle=True, drop_last=False, **kw)
test_dl = torch.utils.data.DataLoader(test_ds, batch_size=batch, shuffle=False, **kw)

net = getattr(torchvision.models, name)()
# The backbone's features, then a fresh head: what xfer's exported backbone + Linear computes.
if hasattr(net, "fc"):
    dim, net.fc = net.fc.in_features, torch.nn.Identity()
else:
    dim, net.classifier[-1] = net.classifier[-1].in_features, torch.nn.Identity()
model = torch.nn.Sequential(net, torch.nn.Linear(dim, len(train_ds.classes)))
lr, wd = 1e-3, 1e-4
opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=wd / lr)
sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
loss_fn = torch.nn.CrossEntropyLoss()
best, trained, evaluated = -1.0, 0, 0
for epoch in range(epochs):
    model.train()
    for x, y in train_dl:
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        trained += len(y)
    sched.step()
    model.eval()
    correct = 0
    with torch.no_grad():
        for x, y in test_dl:
            correct += (model(x).argmax(1) == y).sum().item()
            evaluated += len(y)
    best = max(best, correct / len(test_ds))
print(json.dumps({"wall": time.perf_counter() - T0, "trained": trained, "evaluated": evaluated, "best_accuracy": best}))
