#!/usr/bin/python3
"""N 256×256 JPEGs (quality 90) with natural-image-like content (smooth fields plus texture), in an ImageFolder
layout of 4 classes: OUT/<class>/<i>.jpg. Usage: make_jpegs.py OUT N [SEED]"""
import os
import sys

import numpy as np
from PIL import Image

out, n = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(int(sys.argv[3]) if len(sys.argv) > 3 else 7)
yy, xx = np.mgrid[0:256, 0:256] / 256.0
for i in range(n):
    c = f"class{i % 4}"
    os.makedirs(os.path.join(out, c), exist_ok=True)
    f = rng.random(6) * 6
    base = np.stack([np.sin(f[0] * xx + f[1] * yy), np.cos(f[2] * xx - f[3] * yy), np.sin(f[4] * xx * yy + f[5])], -1)
    img = (127 + 90 * base + rng.normal(0, 12, (256, 256, 3))).clip(0, 255).astype(np.uint8)
    Image.fromarray(img).save(os.path.join(out, c, f"{i}.jpg"), quality=90)
