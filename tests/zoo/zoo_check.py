"""One model of the zoo, end to end: exported with random weights by tools/export_backbones.py, checked against the
library's published figures, loaded by xfer and trained one step.

    <venv>/bin/python tests/zoo/zoo_check.py MODEL --xfer build/xfer --out build/zoo [--keep]

Runs under the models venv (./run models: Debian's torch and torchvision, pinned timm and open_clip). Checks:
  1. the export succeeds (torch.jit.script, or a trace checked against eager in train and eval mode);
  2. the feature dimension in the metadata equals the library's own (torchvision's head input, timm's num_features,
     open_clip's output_dim) and the backbone's output;
  3. GMACs at the published size are within 5 % of tests/reference/published_models.csv (or half a unit of the
     published last decimal);
  4. xfer's ImageNet top-1 for the model (`xfer plan --json`, from the paper catalog; the export's metadata for the
     CLIP encoders) equals the library's published value to the paper's one decimal (torchvision: its weights'
     acc@1, read live; timm: the published results table; CLIP: open_clip's published zero-shot accuracy);
  5. `xfer train` runs one optimizer step (batch 2) at the model's input size — 256, or the fixed size of patch-grid
     models (the paper's protocol) — on Fashion-MNIST, and the loss is finite.
Exit status 0 only if every check passed; each failure is printed with what was expected.
"""
import argparse
import csv
import json
import math
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tools"))

import export_backbones as eb  # noqa: E402

FASHION_MNIST = "/usr/share/datasets/fashion-mnist"


def published(name):
    path = os.path.join(ROOT, "tests", "reference", "published_models.csv")
    with open(path) as f:
        rows = csv.DictReader(line for line in f if not line.startswith("#"))
        for r in rows:
            if r["name"] == name:
                return r
    raise SystemExit(f"zoo_check: {name} is not in {path}")


def library_feature_dim(name):
    source, ctor, head, _, weights, _ = eb.MODELS[name]
    if source == "torchvision":
        import torchvision
        m = getattr(torchvision.models, ctor)(weights=None)
        if name.startswith("squeezenet"):
            return m.classifier[1].in_channels  # the 1x1 conv classifier's input channels
        mod = m
        for p in head.split("."):
            mod = mod[int(p)] if p.isdigit() else getattr(mod, p)
        return mod.in_features
    if source == "timm":
        import timm
        return timm.create_model(f"{ctor}.{weights}", pretrained=False).num_features
    import open_clip
    return open_clip.create_model(ctor, pretrained=None).visual.output_dim


def library_top1(name, ref):
    source, _, _, _, weights, _ = eb.MODELS[name]
    if source == "torchvision":
        import torchvision
        enum_name, member = weights.split(".")
        return getattr(torchvision.models, enum_name)[member].meta["_metrics"]["ImageNet-1K"]["acc@1"]
    return float(ref["top1"]) if ref["top1"] else None


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--xfer", required=True)
    ap.add_argument("--out", required=True, help="folder for the exported backbones (kept: later runs reuse them)")
    args = ap.parse_args()
    name = args.model
    if name not in eb.MODELS:
        raise SystemExit(f"zoo_check: unknown model {name}")
    failures = []

    def check(ok, what):
        print(("ok   " if ok else "FAIL ") + what, flush=True)
        if not ok:
            failures.append(what)

    # 1. Export.
    r = run([sys.executable, os.path.join(ROOT, "tools", "export_backbones.py"), name, "--random-init",
             "--out", args.out])
    sys.stdout.write(r.stdout)
    sys.stderr.write(r.stderr)
    check(r.returncode == 0, f"{name}: exported (exit {r.returncode})")
    if r.returncode != 0:
        return 1
    with open(os.path.join(args.out, name + ".json")) as f:
        meta = json.load(f)
    ref = published(name)

    # 2. Feature dimension.
    dim = library_feature_dim(name)
    check(meta["feature_dim"] == dim, f"{name}: feature_dim {meta['feature_dim']} = the library's {dim}")

    # 3. GMACs at the published size.
    size, want, decimals = int(ref["size"]), float(ref["gmacs"]), int(ref["gmacs_decimals"])
    got = meta["gmacs_native"] if meta["native_size"] == size else None
    check(got is not None, f"{name}: exported at the published size {size} (metadata native_size "
                           f"{meta['native_size']})")
    if got is not None:
        tol = max(0.05 * want, 0.5 * 10 ** -decimals)
        check(abs(got - want) <= tol, f"{name}: {got:.4f} GMACs at {size} within {tol:.4f} of the published {want}")

    # 4. ImageNet top-1 as xfer sees it.
    in_catalog = name in eb.PAPER_19
    with tempfile.TemporaryDirectory() as tmp:
        if in_catalog:
            models = f'catalog = "paper"\nmodels = ["{name}"]\nmodels_dir = "{os.path.abspath(args.out)}"\n'
        else:
            models = f'\n[[model]]\nname = "{name}"\nbackbone = "{os.path.abspath(args.out)}/{name}.pt"\n'
        input_size = meta["input_size"] or 256
        spec = os.path.join(tmp, "spec.toml")
        with open(spec, "w") as f:
            f.write(f'[study]\nname = "zoo"\nresults = "{tmp}/r.h5"\nselection = "paper"\n{models}\n'
                    f'[[dataset]]\nname = "fmnist"\nkind = "idx"\nroot = "{FASHION_MNIST}"\nmetric = "accuracy"\n'
                    f'limit_train = 2\nlimit_test = 2\n\n[grid]\nepochs = 1\nbatch_size = 2\n'
                    f'input_size = {input_size}\nweight_decays = [0]\nseeds = [0]\n\n'
                    f'[[grid.optimizer]]\nfamily = "adamw"\nlrs = [1e-4]\n')
        r = run([args.xfer, "plan", spec, "--json"])
        check(r.returncode == 0, f"{name}: xfer plan reads the spec (exit {r.returncode}) {r.stderr.strip()}")
        if r.returncode != 0:
            return 1
        plan = json.loads(r.stdout)
        xfer_top1 = plan["models"][0]["imagenet_top1"]
        lib_top1 = library_top1(name, ref)
        check(lib_top1 is not None and xfer_top1 is not None and abs(xfer_top1 - lib_top1) <= 0.1 + 1e-9,
              f"{name}: xfer's ImageNet top-1 {xfer_top1} = the library's published {lib_top1} to 0.1")

        # 5. One training step in xfer at the model's input size.
        r = run([args.xfer, "train", spec, "--index", "0", "--json", "--checkpoint-dir", os.path.join(tmp, "ck")])
        sys.stderr.write(r.stderr[-2000:])
        check(r.returncode == 0, f"{name}: xfer train exits 0 (exit {r.returncode})")
        if r.returncode == 0:
            res = json.loads(r.stdout)
            loss = res["epochs"][0]["train_loss"] if res.get("epochs") else float("nan")
            check(res["status"] == "done", f"{name}: trial status {res['status']} {res.get('message', '')}")
            check(math.isfinite(loss), f"{name}: one step at {input_size}x{input_size}, batch 2: loss {loss}")
            check(res["feature_dim"] == meta["feature_dim"],
                  f"{name}: xfer's feature_dim {res['feature_dim']} = the metadata's {meta['feature_dim']}")
    print(f"{name}: {'all checks passed' if not failures else str(len(failures)) + ' check(s) failed'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
