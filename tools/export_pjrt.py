#!/usr/bin/env python3
"""Export a model's training and evaluation steps as portable StableHLO for xfer's PJRT engine (TPU, CPU plugin).

    ./run pjrt-export                         # makes build/venv-pjrt-export (tools/requirements-pjrt-export.txt)
    build/venv-pjrt-export/bin/python tools/export_pjrt.py resnet18 --size 32 --classes 10 --batch 16 --tail 2 \
        --optimizer adamw --out models/resnet18.pjrt
    ... --devices 8                           # one SPMD program over 8 chips (the batch split on the "data" axis)

The backbone is the one the study trains: tools/export_backbones.py's catalogue entry (its build() and to_backbone:
torchvision, timm and open_clip models, the head path the paper replaces), or tools/tiny_cnn.py's network for
`tiny_cnn`. With a Linear head — the network model::Classifier builds, with the same state-dict names `backbone.*`
(the TorchScript backbone's keys, which the engine copies the initial weights from) and `head.*` — it becomes a JAX
function through torchax; around it:
  train step  (params, buffers, opt_state, x, y, lr, wd[, seed]) -> (params', buffers', opt_state', loss)
              cross-entropy (label smoothing baked in), AdamW or SGD written to match torch.optim's update rule
              (LibTorch's, which the parity test compares against), lr and weight decay runtime scalars so one
              program serves the whole lr x wd grid; the state is donated (updated in place on the device).
              A network that draws random numbers in training mode (dropout, stochastic depth) takes an int32
              `seed` last, which seeds torchax's PRNG inside the step (the engine passes a new one every step), and
              the manifest says "random": true; a network that draws none takes no seed ("random": false).
  eval step   (params, buffers, x) -> logits, BatchNorm and dropout in eval mode
exported with jax.export for the CPU and TPU platforms (--platforms; one module serves every platform listed, with
the platform's index as its first argument when there are several). jax.export lowers for platforms the exporting
machine lacks, so a CPU machine exports for cuda too (--platforms cuda): such a variant is its own folder
(<variant>-cuda) beside the cpu,tpu one, the manifest's "platforms" says which platforms its programs are for, and
xfer picks the variant whose platforms hold its plugin's. Programs lowered for cuda use full float32 matrix products
and convolutions (--matmul-precision auto: "highest"), not the TF32 XLA uses for float32 on Ampere and later by
default, as xfer's LibTorch engine keeps float32 float32 outside autocast. One train program per batch size (--batch, and --tail for
an epoch's last, smaller batch: a fixed-shape program cannot pad a training batch without changing BatchNorm's batch
statistics); evaluation pads its last batch (eval mode is per sample).

Writes <out>/<variant>/manifest.json (shapes, dtypes, names, roles, state-dict mapping, hyperparameters, versions)
and the programs (*.mlirbc). torchax 0.0.13 drops BatchNorm's running statistics in training mode; the override
below updates them as PyTorch does (unbiased variance), and --check verifies it and the step against PyTorch eager.
"""
import argparse
import hashlib
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("arch", help="tiny_cnn, or a model of tools/export_backbones.py's catalogue (export_backbones.py "
                                "--list: resnet18, mnasnet0_5, efficientnet_b0, clip_vit_b16, ...)")
    p.add_argument("--size", type=int, required=True, help="input size (pixels)")
    p.add_argument("--classes", type=int, required=True)
    p.add_argument("--batch", type=int, required=True, help="the global training and evaluation batch")
    p.add_argument("--tail", type=int, nargs="*", default=[], help="further training batch sizes (an epoch's last)")
    p.add_argument("--optimizer", choices=["adamw", "sgd"], default="adamw")
    p.add_argument("--beta1", type=float, default=0.9)
    p.add_argument("--beta2", type=float, default=0.999)
    p.add_argument("--eps", type=float, default=1e-8)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--nesterov", action="store_true")
    p.add_argument("--label-smoothing", type=float, default=0.0)
    p.add_argument("--multilabel", action="store_true",
                   help="multi-label datasets (HPA): y is a float32 [batch, classes] 0/1 target, the loss binary "
                        "cross-entropy with logits averaged over samples and classes")
    p.add_argument("--devices", type=int, default=1, help="SPMD partitions: the batch is split over this many devices")
    p.add_argument("--platforms", default="cpu,tpu",
                   help="comma-separated jax.export platforms of one module (cpu, tpu, cuda); other than cpu,tpu, "
                        "the variant's folder name ends in -<platforms joined by +>")
    p.add_argument("--matmul-precision", choices=["auto", "default", "highest"], default="auto",
                   help="jax's default_matmul_precision while tracing: float32 dots and convolutions at full float32 "
                        "(highest) or the platform's default (TF32 on recent NVIDIA GPUs, bfloat16 passes on TPUs); "
                        "auto: highest when cuda is among --platforms")
    p.add_argument("--out", required=True, help="the bundle folder (<backbone>.pjrt); the variant goes in a subfolder")
    p.add_argument("--check", action="store_true",
                   help="compare 3 steps with PyTorch eager (BatchNorm statistics too); with dropout, its masks too")
    return p.parse_args()


ARGS = parse_args()
if ARGS.multilabel and ARGS.label_smoothing:
    sys.exit("--label-smoothing applies to single-label cross-entropy, not --multilabel")
if ARGS.devices > 1:  # the exporting JAX needs that many (CPU) devices to build the mesh
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                               f" --xla_force_host_platform_device_count={ARGS.devices}").strip()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torchax  # noqa: E402
import torchvision  # noqa: E402
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P  # noqa: E402
from torch import nn  # noqa: E402

sys.path.insert(0, HERE)
import export_backbones  # noqa: E402
from tiny_cnn import TinyCNN  # noqa: E402


class Classifier(nn.Module):
    """model::Classifier's network: backbone features -> Linear head (names backbone.*, head.*)."""

    def __init__(self, backbone, dim, classes):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        return self.head(self.backbone(x))


def make_backbone(arch, size):
    """The backbone xfer trains: export_backbones.build + to_backbone, as tools/export_backbones.py makes the
    TorchScript file (same modules, same state-dict keys, dropout layers kept), at random weights (the engine copies
    the initial weights from the TorchScript backbone by name)."""
    if arch == "tiny_cnn":
        return TinyCNN()
    if arch not in export_backbones.MODELS:
        sys.exit(f"{arch}: not in tools/export_backbones.py's catalogue (export_backbones.py --list), nor tiny_cnn")
    fixed = export_backbones.MODELS[arch][5]
    if fixed and size != fixed:
        sys.exit(f"{arch}: fixed input size {fixed}, not {size}")
    try:
        model, to_backbone, *_ = export_backbones.build(arch, random_init=True)
    except export_backbones.ExportError as e:
        sys.exit(str(e))
    return to_backbone(model)


def drop_modules(model):
    """Where the network draws random numbers in training mode, as attributes: (module, attribute) pairs."""
    out = []
    for m in model.modules():
        if isinstance(m, nn.modules.dropout._DropoutNd):
            out.append((m, "p"))
        elif hasattr(m, "drop_prob") and isinstance(getattr(m, "drop_prob"), float):  # timm DropPath
            out.append((m, "drop_prob"))
        elif hasattr(m, "drop_rate") and isinstance(getattr(m, "drop_rate"), float):  # timm heads (F.dropout)
            out.append((m, "drop_rate"))
    return out


def uses_randomness(fn, args):
    """Whether tracing fn draws random bits (jaxpr primitives random_bits / threefry2x32, nested jaxprs included)."""
    jaxpr = jax.make_jaxpr(fn)(*args)

    def walk(j):
        for e in j.eqns:
            if e.primitive.name in ("random_bits", "threefry2x32"):
                return True
            for v in e.params.values():
                for w in (v if isinstance(v, (tuple, list)) else (v,)):
                    inner = getattr(w, "jaxpr", w)
                    if hasattr(inner, "eqns") and walk(inner):
                        return True
        return False
    return walk(jaxpr.jaxpr)


# ---- BatchNorm in training mode, as PyTorch does it (torchax 0.0.13 leaves the running statistics unchanged) ------
def batch_norm_with_stats(input, weight, bias, running_mean, running_var, training, momentum, eps):
    dims = [0] + list(range(2, input.ndim))
    shape = [1, -1] + [1] * (input.ndim - 2)
    if training:
        mean = input.mean(dims)
        centred = input - mean.reshape(shape)
        var = (centred * centred).mean(dims)  # aten::var.dim has no torchax lowering
        n = input.numel() // input.shape[1]
        if running_mean is not None:
            running_mean.copy_((1 - momentum) * running_mean + momentum * mean)
            running_var.copy_((1 - momentum) * running_var + momentum * var * (n / max(n - 1, 1)))
        rstd = torch.rsqrt(var + eps)
        out = centred * rstd.reshape(shape)
    else:
        mean, rstd = running_mean, torch.rsqrt(running_var + eps)
        out = (input - mean.reshape(shape)) * rstd.reshape(shape)
    if weight is not None:
        out = out * weight.reshape(shape)
    if bias is not None:
        out = out + bias.reshape(shape)
    return out, mean, rstd


def native_batch_norm(input, weight, bias, running_mean, running_var, training, momentum, eps):
    return batch_norm_with_stats(input, weight, bias, running_mean, running_var, training, momentum, eps)


def make_env():
    env = torchax.default_env()
    env.override_op_definition(torch.ops.aten._native_batch_norm_legit.default, batch_norm_with_stats)
    env.override_op_definition(torch.ops.aten.native_batch_norm.default, native_batch_norm)
    return env


# ---- the steps ---------------------------------------------------------------------------------------------------
class Steps:
    def __init__(self, model, a):
        self.a = a
        self.model = model
        self.env = make_env()
        self.jm = torchax.interop.JittableModule(model)
        sd = dict(model.named_parameters())
        self.param_names = list(sd.keys())
        self.buffer_names = [k for k, v in model.named_buffers() if not k.endswith("num_batches_tracked")]
        self.counters = [k for k, v in model.named_buffers() if k.endswith("num_batches_tracked")]
        self.random = False  # set by main: the train step takes a seed (the network draws random numbers)

    def forward(self, params, buffers, x, train, seed=None):
        self.model.train(train)
        env = self.env
        b = dict(buffers)
        saved = env._property.content  # the environment's PRNG key: not left holding this trace's seed
        try:
            with env:
                if seed is not None:  # dropout's masks from the step's seed (torchax: jax.random.PRNGKey(seed))
                    env.manual_seed(seed)
                for k in self.counters:  # carried by PyTorch only (momentum=None BatchNorm); not part of the state
                    b[k] = jnp.zeros((), jnp.int32)
                tp, tb, tx = env.j2t_iso((params, b, x))
                logits = self.jm.functional_call("forward", tp, tb, tx)
                out = env.t2j_iso(logits)
                new_buffers = {k: env.t2j_iso(tb[k]) for k in self.buffer_names}
        finally:
            env._property.content = saved
        return out, new_buffers

    def loss(self, logits, y):
        if self.a.multilabel:  # torch's binary_cross_entropy_with_logits, the mean over samples and classes
            z = logits.astype(jnp.float32)
            return jnp.mean(jnp.maximum(z, 0) - z * y + jnp.log1p(jnp.exp(-jnp.abs(z))))
        logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=1)
        nll = -jnp.take_along_axis(logp, y[:, None].astype(jnp.int32), axis=1)[:, 0]
        ls = self.a.label_smoothing
        per = (1 - ls) * nll + ls * (-jnp.mean(logp, axis=1)) if ls > 0 else nll
        return jnp.mean(per)

    def opt_names(self):
        if self.a.optimizer == "adamw":
            return ([f"opt/exp_avg/{k}" for k in self.param_names] + [f"opt/exp_avg_sq/{k}" for k in self.param_names]
                    + ["opt/step"])
        return [f"opt/momentum_buffer/{k}" for k in self.param_names]

    def update(self, params, grads, opt, lr, wd):
        a = self.a
        names = self.param_names
        n = len(names)
        if a.optimizer == "adamw":  # torch.optim.AdamW / torch::optim::AdamW
            m, v, step = opt[:n], opt[n:2 * n], opt[2 * n] + 1.0
            bc1 = 1.0 - a.beta1 ** step
            bc2 = 1.0 - a.beta2 ** step
            new_p, new_m, new_v = [], [], []
            for k, p, mi, vi in zip(names, params, m, v):
                g = grads[k]
                p = p * (1.0 - lr * wd)
                mi = mi * a.beta1 + g * (1.0 - a.beta1)
                vi = vi * a.beta2 + g * g * (1.0 - a.beta2)
                denom = jnp.sqrt(vi) / jnp.sqrt(bc2) + a.eps
                p = p - (lr / bc1) * mi / denom
                new_p.append(p), new_m.append(mi), new_v.append(vi)
            return new_p, new_m + new_v + [step]
        # torch.optim.SGD: weight decay added to the gradient, momentum buffer (first step: the gradient), Nesterov
        new_p, new_b = [], []
        for k, p, buf in zip(names, params, opt):
            d = grads[k] + wd * p
            buf = a.momentum * buf + d
            d = d + a.momentum * buf if a.nesterov else buf
            new_p.append(p - lr * d)
            new_b.append(buf)
        return new_p, new_b

    def flat_train(self, *args):
        np_, nb = len(self.param_names), len(self.buffer_names)
        no = len(self.opt_names())
        params = list(args[:np_])
        buffers = dict(zip(self.buffer_names, args[np_:np_ + nb]))
        opt = list(args[np_ + nb:np_ + nb + no])
        if self.random:
            x, y, lr, wd, seed = args[np_ + nb + no:]
        else:
            (x, y, lr, wd), seed = args[np_ + nb + no:], None

        def loss_fn(pdict):
            logits, new_buffers = self.forward(pdict, buffers, x, True, seed)
            return self.loss(logits, y), new_buffers

        (loss, new_buffers), grads = jax.value_and_grad(loss_fn, has_aux=True)(dict(zip(self.param_names, params)))
        new_p, new_opt = self.update(params, grads, opt, lr, wd)
        return tuple(new_p) + tuple(new_buffers[k] for k in self.buffer_names) + tuple(new_opt) + (loss,)

    def flat_eval(self, *args):
        np_, nb = len(self.param_names), len(self.buffer_names)
        p = dict(zip(self.param_names, args[:np_]))
        bf = dict(zip(self.buffer_names, args[np_:np_ + nb]))
        logits, _ = self.forward(p, bf, args[np_ + nb], False)
        return (logits,)


def spec(name, role, arr_shape, dtype, sharded=False):
    return {"name": name, "role": role, "shape": list(arr_shape), "dtype": dtype, "sharded": sharded}


def target_spec(b):
    """The train step's y: class indices, or (--multilabel) 0/1 targets per class."""
    if ARGS.multilabel:
        return spec("y", "targets", (b, ARGS.classes), "float32", True)
    return spec("y", "labels", (b,), "int32", True)


def main():
    a = ARGS
    torch.manual_seed(0)
    backbone = make_backbone(a.arch, a.size).eval()
    with torch.no_grad():
        dim = int(backbone(torch.zeros(2, 3, a.size, a.size)).shape[1])
    model = Classifier(backbone, dim, a.classes)
    steps = Steps(model, a)
    sd = model.state_dict()
    params = [sd[k] for k in steps.param_names]
    buffers = [sd[k] for k in steps.buffer_names]

    state = [spec(k, "param", sd[k].shape, "float32") for k in steps.param_names]
    state += [spec(k, "buffer", sd[k].shape, "float32") for k in steps.buffer_names]
    for k in steps.opt_names():
        shape = [] if k == "opt/step" else sd[k.split("/", 2)[2]].shape
        state.append(spec(k, "optimizer", shape, "float32"))
    n_state = len(state)

    if a.batch % a.devices or any(t % a.devices for t in a.tail):
        sys.exit(f"every batch size must divide by --devices {a.devices}")
    mesh = Mesh(np.array(jax.devices()[:a.devices]), ("data",)) if a.devices > 1 else None
    rep = NamedSharding(mesh, P()) if mesh else None
    split = NamedSharding(mesh, P("data")) if mesh else None
    platforms = a.platforms.split(",")

    def sds(s):
        return jax.ShapeDtypeStruct(tuple(s["shape"]), jnp.float32 if s["dtype"] == "float32" else jnp.int32)

    variant = (f"s{a.size}-c{a.classes}-b{a.batch}-{a.optimizer}" + ("-nesterov" if a.nesterov and a.optimizer == "sgd" else "")
               + ("-multilabel" if a.multilabel else "") + f"-d{a.devices}"
               + ("" if platforms == ["cpu", "tpu"] else "-" + "+".join(platforms)))
    precision = a.matmul_precision if a.matmul_precision != "auto" else ("highest" if "cuda" in platforms else "default")
    out = os.path.join(a.out, variant)
    os.makedirs(out, exist_ok=True)
    programs = {"train": [], "eval": None}

    def export(fn, inputs, outputs, donate, shard_in, shard_out, file):
        kw = {"donate_argnums": tuple(donate), "keep_unused": True}
        if mesh:
            kw["in_shardings"] = tuple(split if s else rep for s in shard_in)
            kw["out_shardings"] = tuple(split if s else rep for s in shard_out)
        with jax.default_matmul_precision(None if precision == "default" else precision):
            exp = jax.export.export(jax.jit(fn, **kw), platforms=platforms)(*[sds(s) for s in inputs])
        if len(exp.in_avals) != len(inputs) or list(exp.module_kept_var_idx) != list(range(len(inputs))):
            sys.exit(f"{file}: arguments were dropped or added by jax.export")
        code = exp.mlir_module_serialized
        with open(os.path.join(out, file), "wb") as f:
            f.write(code)
        text = exp.mlir_module()
        main_line = next(l for l in text.splitlines() if "func.func public @main(" in l)
        # Several platforms: the module's first argument is the platform's index in `platforms` (jax.export).
        platform_index = '%arg0: tensor<i32> {jax.global_constant = "_platform_index"}' in main_line
        return {"file": file, "bytes": len(code), "sha256": hashlib.sha256(code).hexdigest(),
                "platform_index_argument": bool(platform_index), "calling_convention_version": exp.calling_convention_version,
                "inputs": [s["name"] for s in inputs], "outputs": [s["name"] for s in outputs]}

    def train_data(b):
        return [spec("x", "data", (b, 3, a.size, a.size), "float32", True), target_spec(b),
                spec("lr", "scalar", (), "float32"), spec("weight_decay", "scalar", (), "float32")]

    # Dropout and stochastic depth: trace the step with a seed input and see whether it draws random bits; without
    # the seed torchax would bake its environment's key in as a constant (the same masks every step).
    seed_spec = spec("seed", "seed", (), "int32")
    steps.random = True
    steps.random = uses_randomness(steps.flat_train, [sds(s) for s in state + train_data(a.batch) + [seed_spec]])
    print(f"random numbers in the train step: {'yes (it takes a seed)' if steps.random else 'no'}", file=sys.stderr)

    for b in [a.batch] + a.tail:
        data = train_data(b) + ([seed_spec] if steps.random else [])
        outs = state + [spec("loss", "loss", (), "float32")]
        prog = export(steps.flat_train, state + data, outs, range(n_state), [s["sharded"] for s in state + data],
                      [False] * len(outs), f"train_b{b}.mlirbc")
        prog["batch"] = b
        programs["train"].append(prog)
        print(f"train step, batch {b}: {prog['bytes']} bytes", file=sys.stderr)

    model_state = state[:len(steps.param_names) + len(steps.buffer_names)]

    flat_eval = steps.flat_eval
    ein = model_state + [spec("x", "data", (a.batch, 3, a.size, a.size), "float32", True)]
    eout = [spec("logits", "logits", (a.batch, a.classes), "float32", True)]
    programs["eval"] = export(flat_eval, ein, eout, [], [s["sharded"] for s in ein], [True], f"eval_b{a.batch}.mlirbc")
    programs["eval"]["batch"] = a.batch
    print(f"eval step: {programs['eval']['bytes']} bytes", file=sys.stderr)

    manifest = {
        "format": "xfer-pjrt-bundle-1",
        "arch": a.arch, "input_size": a.size, "classes": a.classes, "feature_dim": dim,
        "batch": a.batch, "devices": a.devices, "platforms": platforms, "matmul_precision": precision,
        "optimizer": {"family": a.optimizer, "beta1": a.beta1, "beta2": a.beta2, "eps": a.eps,
                      "momentum": a.momentum, "nesterov": a.nesterov},
        "label_smoothing": a.label_smoothing,
        "multilabel": a.multilabel,
        "random": steps.random,
        "state": state,
        "tensors": [spec("x", "data", (a.batch, 3, a.size, a.size), "float32", True),
                    target_spec(a.batch), spec("lr", "scalar", (), "float32"),
                    spec("weight_decay", "scalar", (), "float32"), spec("loss", "loss", (), "float32"),
                    spec("logits", "logits", (a.batch, a.classes), "float32", True)]
                   + ([seed_spec] if steps.random else []),
        "state_dict_mapping": "state entries with role param/buffer are model::Classifier's state names "
                              "(backbone.<torch state_dict key>, head.weight, head.bias); num_batches_tracked is not carried",
        "programs": programs,
        "versions": {"jax": jax.__version__, "jaxlib": jax.lib.__version__ if hasattr(jax.lib, "__version__") else "",
                     "torch": torch.__version__, "torchvision": torchvision.__version__,
                     "torchax": getattr(torchax, "__version__", "0.0.13"), "python": sys.version.split()[0],
                     **{m: sys.modules[m].__version__ for m in ("timm", "open_clip") if m in sys.modules}},
        "exporter": "tools/export_pjrt.py",
    }
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=0)
    print(f"matmul precision {precision}, platforms {','.join(platforms)}: {out}")

    if a.check:
        check(steps, model, params, buffers, a)


def check_random(steps, model, st0, x, y, a, report):
    """A network with dropout: the exported train step's masks come from its seed (the same seed, the same loss;
    another seed, another loss), are PyTorch's in distribution (over 32 seeds against 32 torch masks at lr 0: the
    mean train-mode loss, and the variance of the train-mode logits across masks, which is proportional to
    p / (1 - p) for dropout), and the eval step has none (its logits equal PyTorch's in eval mode)."""
    import copy
    n = 32
    nm = len(steps.param_names) + len(steps.buffer_names)
    jx, jy = jnp.asarray(x.numpy()), jnp.asarray(y.numpy(), jnp.float32 if a.multilabel else jnp.int32)
    train = jax.jit(lambda *args: steps.flat_train(*args))

    def loss_of(seed, lr, wd):
        return float(train(*st0, jx, jy, jnp.float32(lr), jnp.float32(wd), jnp.int32(seed))[-1])
    same = (loss_of(7, 1e-4, 0.05), loss_of(7, 1e-4, 0.05))
    other = loss_of(8, 1e-4, 0.05)
    jax_losses = np.array([loss_of(s, 0.0, 0.0) for s in range(n)])
    pd = dict(zip(steps.param_names, st0[:len(steps.param_names)]))
    bd = dict(zip(steps.buffer_names, st0[len(steps.param_names):nm]))
    logits_fn = jax.jit(lambda s: steps.forward(pd, bd, jx, True, s)[0])
    jax_logits = np.stack([np.asarray(logits_fn(jnp.int32(s))) for s in range(n)])
    # Eval mode with BatchNorm running statistics of a batch (at random initialisation with the initial statistics,
    # a deep network's eval-mode features can vanish, which would make the comparison empty): the batch's own, taken
    # by PyTorch in training mode with momentum 1 and the dropout off.
    calibrated = copy.deepcopy(model)
    for m, attr in drop_modules(calibrated):
        setattr(m, attr, 0.0)
    bns = [m for m in calibrated.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    with torch.no_grad():
        for m in bns:
            m.momentum, m.saved = 1.0, m.momentum
        calibrated.train()(x)
        for m in bns:
            m.momentum = m.saved
        calibrated.eval()
        torch_eval = calibrated(x).numpy()
    csd = calibrated.state_dict()
    ev = jax.jit(lambda *args: steps.flat_eval(*args))
    jax_eval = np.asarray(ev(*[jnp.asarray(csd[k].numpy()) for k in steps.param_names + steps.buffer_names], jx)[0])

    crit = nn.BCEWithLogitsLoss() if a.multilabel else nn.CrossEntropyLoss(label_smoothing=a.label_smoothing)
    ref = copy.deepcopy(model)
    with torch.no_grad():
        ref.train()
        torch_logits, torch_losses = [], []
        for s in range(n):
            torch.manual_seed(1000 + s)
            z = ref(x)
            torch_logits.append(z.numpy())
            torch_losses.append(float(crit(z, y)))
        quiet = copy.deepcopy(model).train()
        for m, attr in drop_modules(quiet):
            setattr(m, attr, 0.0)
        no_dropout = float(crit(quiet(x), y))
    torch_losses, torch_logits = np.array(torch_losses), np.stack(torch_logits)
    se = float(np.sqrt(jax_losses.var(ddof=1) / n + torch_losses.var(ddof=1) / n))
    var_j = float(jax_logits.var(axis=0, ddof=1).mean())
    var_t = float(torch_logits.var(axis=0, ddof=1).mean())
    eval_diff = float(np.max(np.abs(jax_eval - torch_eval)) / max(1.0, float(np.max(np.abs(torch_eval)))))
    report.update({
        "seed_7_twice": list(same), "seed_8": other,
        "mean_train_loss_32_seeds": {"jax": float(jax_losses.mean()), "torch": float(torch_losses.mean()),
                                     "standard_error": se, "torch_without_dropout": no_dropout},
        "logit_variance_across_masks": {"jax": var_j, "torch": var_t, "ratio": var_j / var_t if var_t else None},
        "eval_logits_max_rel_diff": eval_diff, "eval_logits_max_abs": float(np.max(np.abs(torch_eval)))})
    problems = []
    if same[0] != same[1]:
        problems.append("the same seed gave different losses")
    if other == same[0]:
        problems.append("another seed gave the same loss (the masks do not follow the seed)")
    if abs(jax_losses.mean() - torch_losses.mean()) > 4 * se + 1e-6:
        problems.append("the mean train-mode loss over 32 seeds is not PyTorch's (more than 4 standard errors)")
    if not (var_t > 0 and 0.7 <= var_j / var_t <= 1 / 0.7):
        problems.append("the logits' variance across masks is not PyTorch's (the dropout's strength differs)")
    if eval_diff > 1e-3:
        problems.append("the eval step's logits are not PyTorch's in eval mode")
    return problems


def check(steps, model, params, buffers, a):
    """Three steps of the exported train function (run by JAX here) against PyTorch eager with torch.optim. With
    dropout: check_random first, then the three steps with the dropout set to 0 on both sides (the same masks
    cannot be drawn by both)."""
    import copy
    torch.manual_seed(1)
    b = a.batch
    x = torch.randn(b, 3, a.size, a.size)
    y = (torch.rand(b, a.classes) < 0.2).float() if a.multilabel else torch.randint(0, a.classes, (b,))
    lr, wd = 1e-4, 0.05
    st0 = [jnp.asarray(t.detach().numpy()) for t in params + buffers]
    st0 += [jnp.zeros(s["shape"], jnp.float32) for s in [
        {"shape": [] if k == "opt/step" else list(model.state_dict()[k.split("/", 2)[2]].shape)} for k in steps.opt_names()]]
    report, problems = {}, []
    if steps.random:
        problems += check_random(steps, model, st0, x, y, a, report)
        for m, attr in drop_modules(model):
            setattr(m, attr, 0.0)
    ref = copy.deepcopy(model).train()
    opt = (torch.optim.AdamW(ref.parameters(), lr=lr, betas=(a.beta1, a.beta2), eps=a.eps, weight_decay=wd)
           if a.optimizer == "adamw" else
           torch.optim.SGD(ref.parameters(), lr=lr, momentum=a.momentum, nesterov=a.nesterov, weight_decay=wd))
    crit = nn.BCEWithLogitsLoss() if a.multilabel else nn.CrossEntropyLoss(label_smoothing=a.label_smoothing)
    ref_losses = []
    for _ in range(3):
        opt.zero_grad()
        loss = crit(ref(x), y)
        loss.backward()
        opt.step()
        ref_losses.append(loss.item())
    st = list(st0)
    fn = jax.jit(lambda *args: steps.flat_train(*args))  # traced now: with the dropout set to 0 above
    losses = []
    for k in range(3):
        seed = (jnp.int32(k),) if steps.random else ()
        yj = jnp.asarray(y.numpy(), jnp.float32 if a.multilabel else jnp.int32)
        outs = fn(*st, jnp.asarray(x.numpy()), yj, jnp.float32(lr), jnp.float32(wd), *seed)
        st, loss = list(outs[:-1]), float(outs[-1])
        losses.append(loss)
    ref_sd = ref.state_dict()
    # BatchNorm statistics relative to their size (deep layers' running variances are large)
    worst_buffer = max(float(np.max(np.abs(np.asarray(st[len(params) + i]) - ref_sd[k].numpy()) /
                                    np.maximum(1.0, np.abs(ref_sd[k].numpy()))))
                       for i, k in enumerate(steps.buffer_names)) if steps.buffer_names else 0.0
    moved = any(float(np.max(np.abs(np.asarray(st[len(params) + i]) - buffers[i].numpy()))) > 0
                for i in range(len(buffers)))
    report.update({"torch_losses": ref_losses, "jax_losses": losses, "max_buffer_diff": worst_buffer,
                   "buffers_moved": moved})
    print(json.dumps(report))
    if not all(abs(p - q) <= 1e-3 * max(1.0, abs(p)) for p, q in zip(ref_losses, losses)):
        problems.append("three steps do not match PyTorch eager's losses")
    if worst_buffer >= 5e-3 or not (moved or not buffers):
        problems.append("the BatchNorm statistics do not match PyTorch eager's")
    if problems:
        sys.exit("check failed: " + "; ".join(problems))


if __name__ == "__main__":
    main()
