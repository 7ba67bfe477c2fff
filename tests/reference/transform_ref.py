#!/usr/bin/python3
"""torchvision's evaluation transform (Resize(S / crop_pct) → CenterCrop(S) → ToTensor → Normalize with ImageNet
statistics) on PIL-decoded images, as the paper's loaders apply it. Writes raw float32 C×S×S per image.

    transform_ref.py S CROP_PCT OUT_DIR IMAGE...        (outputs OUT_DIR/<i>.f32)
"""
import os
import sys

import numpy as np
import torchvision.transforms as T
from PIL import Image

S, crop_pct, out = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
tf = T.Compose([T.Resize(int(S / crop_pct)), T.CenterCrop(S), T.ToTensor(),
                T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
for i, path in enumerate(sys.argv[4:]):
    with open(path, "rb") as f:
        img = Image.open(f).convert("RGB")  # torchvision's pil_loader
    tf(img).numpy().astype(np.float32).tofile(os.path.join(out, f"{i}.f32"))
