#!/usr/bin/python3
"""Reads an xfer results file with h5py and pandas only (no xfer code) and reports what a test needs to check
exactly-once execution. Usage: check_results.py RESULTS.h5 → JSON on stdout."""
import json
import struct
import sys
import zlib

import h5py
import numpy as np
import pandas as pd

f = h5py.File(sys.argv[1], "r")
trials = pd.DataFrame(f["trials"][()])
for c in trials.columns:
    if trials[c].dtype == object:
        trials[c] = trials[c].str.decode("utf-8")
curves = pd.DataFrame(f["curves"][()])
curves["key"] = curves["key"].str.decode("utf-8")
index = pd.DataFrame(f["predictions/index"][()])
for c in ("key", "split", "dataset"):
    index[c] = index[c].str.decode("utf-8")
scores = f["predictions/scores"]
samples = f["predictions/samples"]
pred_ok = True
for _, r in index.iterrows():
    s = samples[r.offset:r.offset + r.n]
    p = scores[r.offset * r.classes:(r.offset + r.n) * r.classes].reshape(r.n, r.classes)
    pred_ok &= bool(len(s) == r.n and np.all(s >= 0) and np.allclose(p.sum(1), 1, atol=1e-3))
# Each row's checksums, recomputed from the columns the file names (format 3): independent of xfer's reader.
def crc_ok(row, names):
    b = b""
    for n in names:
        v = row[n]
        kind = f["trials"].dtype[n].kind
        if kind == "f":
            b += struct.pack("<d", v)
        elif kind in "iu":
            b += struct.pack("<q", int(v))
        else:
            s = v if isinstance(v, bytes) else v.encode("utf-8")
            b += struct.pack("<I", len(s)) + s
    return zlib.crc32(b)
raw = f["trials"][()]
checksums_ok = 0
for column, attr in (("config_crc32", "config_crc32_columns"), ("state_crc32", "state_crc32_columns")):
    names = f["trials"].attrs[attr].split(";")[0].split()
    checksums_ok += sum(int(crc_ok(r, names) == r[column]) for r in raw)
dup_curves = int(curves.duplicated(["key", "attempt", "epoch"]).sum())
last = curves.sort_values("attempt").groupby("key").attempt.max()
complete = {k: sorted(curves[(curves.key == k) & (curves.attempt == a)].epoch.tolist()) for k, a in last.items()}
out = {
    "trials": len(trials),
    "unique_keys": int(trials.key.nunique()),
    "status": trials.status.value_counts().to_dict(),
    "attempts": trials.attempts.value_counts().to_dict(),
    "resumed": trials[trials.resumed_from >= 0].key.tolist(),
    "curve_rows": len(curves),
    "duplicate_curve_rows": dup_curves,
    "epochs_per_trial": {k: v for k, v in complete.items()},
    "prediction_sets": len(index),
    "prediction_sets_unique": int(index.drop_duplicates(["key", "split"]).shape[0]),
    "predictions_valid": pred_ok,
    "runs": int(f["runs"].shape[0]),
    "run_end_reasons": [r.decode() for r in f["runs"]["end_reason"]],
    "format": f.attrs["format"],
    "checksums_ok": checksums_ok == 2 * len(raw),
    "specs": int(f["study/specs"].shape[0]),
    "val_metric_finite": int(np.isfinite(trials.val_metric).sum()),
}
print(json.dumps({k: (int(v) if isinstance(v, (np.integer,)) else v) for k, v in out.items()}, default=int))
