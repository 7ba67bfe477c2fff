#!/usr/bin/python3
"""Random metric cases with scikit-learn's answers, for tests/unit/metrics_test.cpp.

    metrics_cases.py OUT_DIR [--cases-per-metric N] [--seed S]

Writes OUT_DIR/<i>.labels.csv, OUT_DIR/<i>.scores.csv and OUT_DIR/cases.json: [{"id", "metric", "expected" (null
when scikit-learn says the metric is undefined), "kind"}]. Cases include ties (rounded scores), absent classes,
extreme imbalance, one-column binary scores, tiny and empty-class inputs.
"""
import argparse
import json
import os
import warnings

import numpy as np
from sklearn.metrics import (accuracy_score, balanced_accuracy_score, cohen_kappa_score, f1_score, log_loss,
                             roc_auc_score)

warnings.simplefilter("ignore")


def write_csv(path, arr, fmt):
    arr = np.asarray(arr)
    if arr.ndim == 1:
        arr = arr[:, None]
    with open(path, "w") as f:
        for row in arr:
            f.write(",".join(fmt(v) for v in row) + "\n")


def rnd_scores(rng, n, k, ties):
    s = rng.random((n, k))
    if ties:
        s = np.round(s, rng.integers(1, 3))
    return s


def labels_single(rng, n, k, scenario):
    if scenario == "absent":
        present = rng.choice(k, size=max(1, k // 2), replace=False)
        return rng.choice(present, size=n)
    if scenario == "imbalanced":
        p = np.full(k, 0.002 / max(1, k - 1))
        p[0] = 1 - p[1:].sum()
        return rng.choice(k, size=n, p=p)
    return rng.integers(0, k, size=n)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--cases-per-metric", type=int, default=40)
    ap.add_argument("--seed", type=int, default=20230110)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    rng = np.random.default_rng(a.seed)
    cases = []
    scenarios = ["plain", "ties", "absent", "imbalanced", "tiny"]

    def add(metric, y, s, expected, kind, multi=False):
        i = len(cases)
        write_csv(os.path.join(a.out, f"{i}.labels.csv"), y, lambda v: str(int(v)))
        write_csv(os.path.join(a.out, f"{i}.scores.csv"), s, lambda v: repr(float(v)))
        e = None if expected is None or not np.isfinite(expected) else float(expected)
        cases.append({"id": i, "metric": metric, "expected": e, "kind": kind, "multilabel": multi})

    for metric in ["accuracy", "balanced_accuracy", "qwk", "macro_f1", "log_loss"]:
        for c in range(a.cases_per_metric):
            sc = scenarios[c % len(scenarios)]
            n = int(rng.integers(1, 6)) if sc == "tiny" else int(rng.integers(20, 1500))
            k = int(rng.integers(2, 9))
            y = labels_single(rng, n, k, sc)
            s = rnd_scores(rng, n, k, sc == "ties")
            if metric == "log_loss":
                s = rng.dirichlet(np.ones(k) * rng.choice([0.1, 1.0, 5.0]), size=n)
                if c % 4 == 1:
                    hard = rng.random(n) < 0.2
                    s[hard] = np.eye(k)[rng.integers(0, k, size=int(hard.sum()))]  # exact 0s and 1s: clipping
            pred = np.argmax(s, axis=1)
            try:
                if metric == "accuracy":
                    e = accuracy_score(y, pred)
                elif metric == "balanced_accuracy":
                    e = balanced_accuracy_score(y, pred)
                elif metric == "qwk":
                    e = cohen_kappa_score(y, pred, labels=list(range(k)), weights="quadratic")
                elif metric == "macro_f1":
                    e = f1_score(y, pred, average="macro", zero_division=0)
                else:
                    e = log_loss(y, s, labels=list(range(k)))
            except ValueError:
                e = None
            add(metric, y, s, e, sc)
        # One-column binary scores (p(positive)).
        for c in range(4):
            n = int(rng.integers(10, 500))
            y = rng.integers(0, 2, size=n)
            p = np.round(rng.random(n), 1) if c % 2 else rng.random(n)
            if metric == "log_loss":
                e = log_loss(y, p, labels=[0, 1])
            else:
                pred = (p > 0.5).astype(int)
                e = {"accuracy": lambda: accuracy_score(y, pred),
                     "balanced_accuracy": lambda: balanced_accuracy_score(y, pred),
                     "qwk": lambda: cohen_kappa_score(y, pred, labels=[0, 1], weights="quadratic"),
                     "macro_f1": lambda: f1_score(y, pred, average="macro", zero_division=0)}[metric]()
            add(metric, y, p, e, "one-column")

    # Degenerate kappa: every label and prediction the same class.
    y = np.zeros(20, dtype=int)
    s = np.tile([0.9, 0.1, 0.0], (20, 1))
    add("qwk", y, s, cohen_kappa_score(y, np.argmax(s, 1), labels=[0, 1, 2], weights="quadratic"), "degenerate")

    # ROC-AUC: binary, ties, extreme imbalance, one column or two.
    for c in range(a.cases_per_metric + 10):
        sc = scenarios[c % len(scenarios)]
        n = int(rng.integers(2, 6)) if sc == "tiny" else int(rng.integers(20, 3000))
        p_pos = 0.005 if sc == "imbalanced" else rng.uniform(0.1, 0.9)
        y = (rng.random(n) < p_pos).astype(int)
        if sc == "imbalanced" and y.sum() == 0:
            y[rng.integers(0, n)] = 1
        s = rng.random(n)
        if sc in ("ties", "absent"):
            s = np.round(s, 1)
        if c % 7 == 3:
            s = np.where(s < 0.5, -0.0, 0.0) + np.round(s * 3)  # signed zeros must tie
        try:
            e = roc_auc_score(y, s)
        except ValueError:
            e = None
        if c % 2:
            add("roc_auc", y, np.stack([1 - s, s], 1), e, sc)
        else:
            add("roc_auc", y, s, e, sc)
    for y in (np.zeros(10, dtype=int), np.ones(10, dtype=int)):  # one class present: undefined
        add("roc_auc", y, rng.random(10), None, "one-class")

    # Multi-label macro-F1 (HPA-like: 28 labels, rare classes absent), threshold 0.5.
    for c in range(a.cases_per_metric + 10):
        n = int(rng.integers(1, 5)) if c % 9 == 0 else int(rng.integers(20, 1200))
        k = 28 if c % 2 else int(rng.integers(2, 10))
        rates = rng.choice([0.0, 0.001, 0.05, 0.3], size=k)
        Y = (rng.random((n, k)) < rates).astype(int)
        S = rnd_scores(rng, n, k, c % 3 == 0)
        e = f1_score(Y, (S > 0.5).astype(int), average="macro", zero_division=0)
        add("macro_f1", Y, S, e, "multilabel", multi=True)

    with open(os.path.join(a.out, "cases.json"), "w") as f:
        json.dump(cases, f)

    # Per-class thresholds tuned on validation, applied to test: brute force over every cut.
    tuned = []
    for c in range(12):
        k = int(rng.integers(2, 10))
        nv, nt = int(rng.integers(30, 400)), int(rng.integers(30, 400))
        rates = rng.choice([0.0, 0.05, 0.3], size=k)
        Yv = (rng.random((nv, k)) < rates).astype(int)
        Sv = rnd_scores(rng, nv, k, c % 2 == 0)
        Yt = (rng.random((nt, k)) < rates).astype(int)
        St = rnd_scores(rng, nt, k, False)
        thr = []
        for j in range(k):
            if Yv[:, j].sum() == 0:
                thr.append(0.5)
                continue
            u = np.unique(Sv[:, j])[::-1]
            best, best_t = -1.0, 0.5
            for idx, cut in enumerate(u):
                f = f1_score(Yv[:, j], (Sv[:, j] >= cut).astype(int), zero_division=0)
                if f > best:
                    best = f
                    below = u[idx + 1] if idx + 1 < len(u) else cut - 1.0
                    best_t = below + (cut - below) / 2.0
            thr.append(best_t)
        e = f1_score(Yt, (St > np.array(thr)).astype(int), average="macro", zero_division=0)
        base = f"t{c}"
        write_csv(os.path.join(a.out, base + ".val.labels.csv"), Yv, lambda v: str(int(v)))
        write_csv(os.path.join(a.out, base + ".val.scores.csv"), Sv, lambda v: repr(float(v)))
        write_csv(os.path.join(a.out, base + ".labels.csv"), Yt, lambda v: str(int(v)))
        write_csv(os.path.join(a.out, base + ".scores.csv"), St, lambda v: repr(float(v)))
        tuned.append({"id": base, "thresholds": [float(t) for t in thr], "expected": float(e)})
    with open(os.path.join(a.out, "tuned.json"), "w") as f:
        json.dump(tuned, f)
    print(f"{len(cases)} cases, {len(tuned)} threshold cases in {a.out}")


if __name__ == "__main__":
    main()
