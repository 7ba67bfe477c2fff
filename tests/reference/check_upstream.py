#!/usr/bin/python3
"""Reads an xfer results file with h5py only (no xfer code) and reports the upstream stage as a test checks it: every
trial's stage, upstream key, status, attempts and times, the backbone SHA-256 it trained from, and for pre-training
trials the exported file's SHA-256 recomputed here and the one its metadata (<key>.json) records.
Usage: check_upstream.py RESULTS.h5 UPSTREAM_DIR → JSON on stdout."""
import hashlib
import json
import math
import os
import sys

import h5py

f = h5py.File(sys.argv[1], "r")
updir = sys.argv[2]
t = f["trials"][()]
dec = lambda v: v.decode("utf-8") if isinstance(v, bytes) else v
trials = {}
for r in t:
    k = dec(r["key"])
    row = {c: dec(r[c]) for c in ("model", "dataset", "stage", "upstream", "status", "weights", "backbone_sha256",
                                  "exported_sha256")}
    row.update({c: (None if math.isnan(float(r[c])) else float(r[c]))
                for c in ("started_at", "finished_at", "test_metric", "val_metric")})
    row.update({c: int(r[c]) for c in ("attempts", "resumed_from", "epochs_done")})
    if row["stage"] == "upstream":
        pt, js = os.path.join(updir, k + ".pt"), os.path.join(updir, k + ".json")
        row["file_sha256"] = hashlib.sha256(open(pt, "rb").read()).hexdigest() if os.path.exists(pt) else ""
        row["metadata"] = json.load(open(js)) if os.path.exists(js) else {}
        if os.path.exists(pt):  # a TorchScript backbone Debian's torch loads, trainable as exported ones are
            import torch
            m = torch.jit.load(pt)
            ps = list(m.parameters())
            row["parameters"], row["trainable"] = len(ps), sum(int(p.requires_grad) for p in ps)
    trials[k] = row
curves = f["curves"][()]
seen, dup = set(), 0
for c in curves:
    k = (dec(c["key"]), int(c["attempt"]), int(c["epoch"]))
    dup += k in seen
    seen.add(k)
print(json.dumps({"trials": trials, "duplicate_curve_rows": dup, "curve_rows": len(curves)}))
