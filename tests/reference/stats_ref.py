#!/usr/bin/python3
"""Random per-model tables with scipy 1.10 and statsmodels 0.13's answers, for tests/unit/analysis_test.cpp.

    stats_ref.py OUT_DIR [--cases N] [--bootstrap B]

Writes OUT_DIR/<i>.csv (x,y per line: ImageNet top-1 and the metric, both in percentage points) and
OUT_DIR/cases.json with, per case, pearsonr, spearmanr, kendalltau (statistics and p-values) and OLS (params,
standard errors, R²); for the first few cases also scipy.stats.bootstrap percentile intervals (paired, B resamples).
"""
import argparse
import json
import os
import warnings

import numpy as np
import statsmodels.api as sm
from scipy import stats

warnings.simplefilter("ignore")
ap = argparse.ArgumentParser()
ap.add_argument("out")
ap.add_argument("--cases", type=int, default=80)
ap.add_argument("--bootstrap", type=int, default=10000)
a = ap.parse_args()
os.makedirs(a.out, exist_ok=True)
rng = np.random.default_rng(1234)


def finite(v):
    v = float(v)
    return v if np.isfinite(v) else None


cases = []
for i in range(a.cases):
    n = int(rng.integers(3, 34)) if i % 4 else int(rng.integers(34, 60))  # exact and asymptotic Kendall p
    x = rng.uniform(55, 85, n)
    slope = rng.choice([-1.0, -0.2, 0.0, 0.3, 1.0, 2.0])
    y = 20 + slope * x + rng.normal(0, rng.choice([0.5, 3, 10]), n)
    if i % 5 == 1:  # ties, as published top-1 values have (MobileNetV3-Small and MnasNet: both 67.7)
        x = np.round(x, 0)
        y = np.round(y, 0)
    if i % 7 == 3:
        x = np.round(x / 5) * 5
    np.savetxt(os.path.join(a.out, f"{i}.csv"), np.c_[x, y], delimiter=",", fmt="%.17g")
    c = {"id": i, "n": n}
    for name, fn in (("pearson", stats.pearsonr), ("spearman", stats.spearmanr), ("kendall", stats.kendalltau)):
        r = fn(x, y)
        c[name] = [finite(r[0]), finite(r[1])]
    fit = sm.OLS(y, sm.add_constant(x)).fit()
    c["ols"] = {"intercept": float(fit.params[0]), "slope": float(fit.params[1]), "se_intercept": float(fit.bse[0]),
                "se_slope": float(fit.bse[1]), "r2": float(fit.rsquared)}
    z = rng.normal(0, 1, n)
    fit2 = sm.OLS(y, sm.add_constant(np.c_[x, z])).fit()
    c["r2_two"] = float(fit2.rsquared)
    c["z"] = z.tolist()
    if i < 2:
        boot = {}
        data = (x, y)
        for name, stat in (("pearson", lambda u, v: stats.pearsonr(u, v)[0]),
                           ("spearman", lambda u, v: stats.spearmanr(u, v)[0]),
                           ("kendall", lambda u, v: stats.kendalltau(u, v)[0]),
                           ("slope", lambda u, v: np.polyfit(u, v, 1)[0]),
                           ("intercept", lambda u, v: np.polyfit(u, v, 1)[1])):
            res = stats.bootstrap(data, stat, paired=True, vectorized=False, n_resamples=a.bootstrap,
                                  method="percentile", confidence_level=0.95, random_state=np.random.default_rng(i))
            boot[name] = [float(res.confidence_interval.low), float(res.confidence_interval.high),
                          float(res.standard_error)]
        c["bootstrap"] = boot
    cases.append(c)
json.dump(cases, open(os.path.join(a.out, "cases.json"), "w"))
print(len(cases), "cases")
