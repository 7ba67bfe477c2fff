#!/usr/bin/python3
"""Writes scikit-learn's bundled handwritten digits (load_digits: 1,797 greyscale 8×8 images of 0–9, from the UCI
"Optical Recognition of Handwritten Digits" set; python3-sklearn ships them, no download) as an ImageFolder layout
xfer reads with kind = "imagefolder": <out>/<digit>/<index>.png, pixel values 0–16 scaled to 0–255.

Usage: /usr/bin/python3 tools/export_digits.py --out build/data/digits
Idempotent: a finished export (its manifest digits.json, written last) is left as it is."""
import argparse
import hashlib
import json
import os

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="the folder to write (created)")
    out = ap.parse_args().out
    stamp = os.path.join(out, "digits.json")
    if os.path.exists(stamp):
        print(f"{out}: already exported ({json.load(open(stamp))['images']} images)")
        return
    d = load_digits()
    images = np.clip(np.rint(d.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    digest = hashlib.sha256()
    for i, (img, label) in enumerate(zip(images, d.target)):
        folder = os.path.join(out, str(int(label)))
        os.makedirs(folder, exist_ok=True)
        Image.fromarray(img, mode="L").save(os.path.join(folder, f"{i:04d}.png"))
        digest.update(img.tobytes() + bytes([int(label)]))
    meta = {"source": "sklearn.datasets.load_digits (UCI optical recognition of handwritten digits, test part)",
            "images": int(len(images)), "classes": 10, "size": [8, 8], "pixels_sha256": digest.hexdigest()}
    with open(stamp + ".tmp", "w") as f:
        json.dump(meta, f, indent=2)
    os.replace(stamp + ".tmp", stamp)
    print(f"{out}: {len(images)} images of 10 digits")


if __name__ == "__main__":
    main()
