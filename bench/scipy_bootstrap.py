#!/usr/bin/python3
"""The scipy side of bench/stats_bench.cpp: scipy.stats.bootstrap (paired, percentile, B resamples) of Pearson r,
Spearman rho, Kendall tau, OLS slope, intercept and R² for every dataset in DATA (lines: dataset x y). Statistics
numpy can vectorise over resamples are passed vectorised; the rank correlations call scipy per resample.
Prints the seconds taken. Usage: scipy_bootstrap.py DATA B"""
import sys
import time

import numpy as np
from scipy import stats

path, B = sys.argv[1], int(sys.argv[2])
data = {}
for line in open(path):
    d, x, y = line.split()
    data.setdefault(d, ([], []))
    data[d][0].append(float(x))
    data[d][1].append(float(y))


def pearson(x, y, axis=-1):
    xm = x - x.mean(axis, keepdims=True)
    ym = y - y.mean(axis, keepdims=True)
    return (xm * ym).sum(axis) / np.sqrt((xm * xm).sum(axis) * (ym * ym).sum(axis))


def slope(x, y, axis=-1):
    xm = x - x.mean(axis, keepdims=True)
    ym = y - y.mean(axis, keepdims=True)
    return (xm * ym).sum(axis) / (xm * xm).sum(axis)


def intercept(x, y, axis=-1):
    return y.mean(axis) - slope(x, y, axis) * x.mean(axis)


def r2(x, y, axis=-1):
    return pearson(x, y, axis) ** 2


t0 = time.perf_counter()
for d, (x, y) in data.items():
    x, y = np.array(x), np.array(y)
    for stat in (pearson, slope, intercept, r2):
        stats.bootstrap((x, y), stat, paired=True, vectorized=True, n_resamples=B, method="percentile",
                        random_state=np.random.default_rng(0))
    for stat in (lambda u, v: stats.spearmanr(u, v)[0], lambda u, v: stats.kendalltau(u, v)[0]):
        stats.bootstrap((x, y), stat, paired=True, vectorized=False, n_resamples=B, method="percentile",
                        random_state=np.random.default_rng(0))
print(f"{time.perf_counter() - t0:.4f}")
