#!/usr/bin/python3
"""The paper's splits, drawn the way its released loaders draw them (numpy's global legacy RNG, pandas, torchvision's
ImageFolder), for comparison with `xfer splits`.

    paper_splits.py KIND ROOT OUT.csv      KIND: aptos | cassava | eurosat | melanoma

Writes sample_id,split for every row the released code would use: "train" or "test" (the held-out set, which the
paper also uses for selection).
"""
import os
import sys

import numpy as np
import pandas as pd

kind, root, out = sys.argv[1], sys.argv[2], sys.argv[3]
rows = []

if kind in ("aptos", "cassava"):
    key, label, seed = ("id_code", "diagnosis", 414) if kind == "aptos" else ("image_id", "label", 414)
    df = pd.read_csv(os.path.join(root, "train.csv"))
    np.random.seed(seed)
    held = []
    values = df[label].values
    for c in range(5):
        members = [i for i, v in enumerate(values) if v == c]
        held.extend(np.random.choice(members, int(0.2 * len(members)), replace=False).tolist())
    held = set(held)
    for i, k in enumerate(df[key].values):
        rows.append((str(k), "test" if i in held else "train"))
elif kind == "eurosat":
    import torchvision
    base = os.path.join(root, "2750")
    ds = torchvision.datasets.ImageFolder(base)
    np.random.seed(42)
    targets = ds.targets
    held = []
    for c in range(len(ds.classes)):
        members = [i for i, t in enumerate(targets) if t == c]
        held.extend(np.random.choice(members, int(0.2 * len(members)), replace=False).tolist())
    held = set(held)
    for i, (path, _) in enumerate(ds.samples):
        rows.append((os.path.relpath(path, base), "test" if i in held else "train"))
elif kind == "melanoma":
    np.random.seed(23)
    for year in ("2020", "2019"):
        df = pd.read_csv(os.path.join(root, f"melanoma-{year}", "train.csv"))
        folds = set(df["tfrecord"].values)  # iterated as the released code iterates it
        folds = [f for f in folds if f >= 0]
        train_folds = np.random.choice(folds, size=int(0.8 * len(folds)), replace=False).tolist()
        for name, f in zip(df["image_name"].values, df["tfrecord"].values):
            if f < 0:
                continue
            rows.append((str(name), "train" if f in train_folds else "test"))
else:
    sys.exit(f"unknown kind {kind}")

with open(out, "w") as fh:
    fh.write("sample_id,split\n")
    for k, s in rows:
        fh.write(f"{k},{s}\n")
