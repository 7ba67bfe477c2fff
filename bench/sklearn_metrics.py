#!/usr/bin/python3
"""The scikit-learn side of bench/metrics_bench.cpp: times f1_score(average="macro") on the multi-label data and
roc_auc_score on the binary data written by the C++ side (best of R). Prints: t_f1 f1 t_auc auc."""
import sys
import time

import numpy as np
from sklearn.metrics import f1_score, roc_auc_score

base, n, k, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
Y = np.fromfile(base + ".ml_y.u8", dtype=np.uint8).reshape(n, k)
S = np.fromfile(base + ".ml_s.f64", dtype=np.float64).reshape(n, k)
y = np.fromfile(base + ".b_y.i32", dtype=np.int32)
s = np.fromfile(base + ".b_s.f64", dtype=np.float64)


def best(f):
    t, v = 1e300, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        v = f()
        t = min(t, time.perf_counter() - t0)
    return t, v


# The threshold is part of the metric as the study uses it (sigmoid > 0.5), so it is timed on both sides.
t_f1, f1 = best(lambda: f1_score(Y, (S > 0.5).astype(np.uint8), average="macro", zero_division=0))
t_auc, auc = best(lambda: roc_auc_score(y, s))
print(f"{t_f1!r} {f1!r} {t_auc!r} {auc!r}")
