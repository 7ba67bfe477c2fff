#!/usr/bin/python3
"""RandomResizedCrop's box distribution: torchvision's get_params against xfer's boxes, by two-sample
Kolmogorov–Smirnov tests on top, left, height, width, area fraction and aspect ratio.

    rrc_ks.py BOXES.csv ROWS COLS SCALE_LO SCALE_HI    (BOXES.csv: top,left,height,width per line, no header)

Prints a JSON object of p-values.
"""
import json
import sys

import numpy as np
import torch
import torchvision.transforms as T
from PIL import Image
from scipy.stats import ks_2samp

path, rows, cols, lo, hi = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
ours = np.loadtxt(path, delimiter=",", ndmin=2)
torch.manual_seed(1234)
img = Image.new("RGB", (cols, rows))
ref = np.array([T.RandomResizedCrop.get_params(img, scale=(lo, hi), ratio=(3 / 4, 4 / 3)) for _ in range(len(ours))],
               dtype=float)
out = {}
for j, name in enumerate(["top", "left", "height", "width"]):
    out[name] = ks_2samp(ours[:, j], ref[:, j]).pvalue
out["area"] = ks_2samp(ours[:, 2] * ours[:, 3], ref[:, 2] * ref[:, 3]).pvalue
out["aspect"] = ks_2samp(ours[:, 3] / ours[:, 2], ref[:, 3] / ref[:, 2]).pvalue
print(json.dumps(out))
