#!/usr/bin/env python3
"""Export a model's training and evaluation steps as portable StableHLO for xfer's PJRT engine (TPU, CPU plugin).

    ./run pjrt-export                         # makes build/venv-pjrt-export (tools/requirements-pjrt-export.txt)
    build/venv-pjrt-export/bin/python tools/export_pjrt.py resnet18 --size 32 --classes 10 --batch 16 --tail 2 \
        --optimizer adamw --out models/resnet18.pjrt
    ... --devices 8                           # one SPMD program over 8 chips (the batch split on the "data" axis)

The torchvision (or tools/tiny_cnn.py) backbone plus a Linear head — the network model::Classifier builds, with the
same state-dict names `backbone.*` and `head.*` — becomes a JAX function through torchax; around it:
  train step  (params, buffers, opt_state, x, y, lr, wd) -> (params', buffers', opt_state', loss)
              cross-entropy (label smoothing baked in), AdamW or SGD written to match torch.optim's update rule
              (LibTorch's, which the parity test compares against), lr and weight decay runtime scalars so one
              program serves the whole lr x wd grid; the state is donated (updated in place on the device)
  eval step   (params, buffers, x) -> logits, BatchNorm in eval mode
exported with jax.export for the CPU and TPU platforms. One train program per batch size (--batch, and --tail for
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
    p.add_argument("arch", help="tiny_cnn, or a torchvision classification model name (resnet18, ...)")
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
    p.add_argument("--devices", type=int, default=1, help="SPMD partitions: the batch is split over this many devices")
    p.add_argument("--platforms", default="cpu,tpu")
    p.add_argument("--out", required=True, help="the bundle folder (<backbone>.pjrt); the variant goes in a subfolder")
    p.add_argument("--check", action="store_true", help="compare 3 steps with PyTorch eager (BatchNorm statistics too)")
    return p.parse_args()


ARGS = parse_args()
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
from tiny_cnn import TinyCNN  # noqa: E402


class Classifier(nn.Module):
    """model::Classifier's network: backbone features -> Linear head (names backbone.*, head.*)."""

    def __init__(self, backbone, dim, classes):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        return self.head(self.backbone(x))


def make_backbone(arch):
    if arch == "tiny_cnn":
        return TinyCNN()
    b = getattr(torchvision.models, arch)(weights=None)
    for attr in ("fc", "classifier", "heads"):
        if hasattr(b, attr):
            setattr(b, attr, nn.Identity())
            return b
    sys.exit(f"{arch}: no fc/classifier/heads to replace")


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

    def forward(self, params, buffers, x, train):
        self.model.train(train)
        env = self.env
        b = dict(buffers)
        with env:
            for k in self.counters:  # carried by PyTorch only (momentum=None BatchNorm); not part of the state
                b[k] = jnp.zeros((), jnp.int32)
            tp, tb, tx = env.j2t_iso((params, b, x))
            logits = self.jm.functional_call("forward", tp, tb, tx)
            out = env.t2j_iso(logits)
            new_buffers = {k: env.t2j_iso(tb[k]) for k in self.buffer_names}
        return out, new_buffers

    def loss(self, logits, y):
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
        x, y, lr, wd = args[np_ + nb + no:]

        def loss_fn(pdict):
            logits, new_buffers = self.forward(pdict, buffers, x, True)
            return self.loss(logits, y), new_buffers

        (loss, new_buffers), grads = jax.value_and_grad(loss_fn, has_aux=True)(dict(zip(self.param_names, params)))
        new_p, new_opt = self.update(params, grads, opt, lr, wd)
        return tuple(new_p) + tuple(new_buffers[k] for k in self.buffer_names) + tuple(new_opt) + (loss,)


def spec(name, role, arr_shape, dtype, sharded=False):
    return {"name": name, "role": role, "shape": list(arr_shape), "dtype": dtype, "sharded": sharded}


def main():
    a = ARGS
    torch.manual_seed(0)
    backbone = make_backbone(a.arch).eval()
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
               + f"-d{a.devices}")
    out = os.path.join(a.out, variant)
    os.makedirs(out, exist_ok=True)
    programs = {"train": [], "eval": None}

    def export(fn, inputs, outputs, donate, shard_in, shard_out, file):
        kw = {"donate_argnums": tuple(donate), "keep_unused": True}
        if mesh:
            kw["in_shardings"] = tuple(split if s else rep for s in shard_in)
            kw["out_shardings"] = tuple(split if s else rep for s in shard_out)
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

    for b in [a.batch] + a.tail:
        data = [spec("x", "data", (b, 3, a.size, a.size), "float32", True), spec("y", "labels", (b,), "int32", True),
                spec("lr", "scalar", (), "float32"), spec("weight_decay", "scalar", (), "float32")]
        outs = state + [spec("loss", "loss", (), "float32")]
        prog = export(steps.flat_train, state + data, outs, range(n_state), [s["sharded"] for s in state + data],
                      [False] * len(outs), f"train_b{b}.mlirbc")
        prog["batch"] = b
        programs["train"].append(prog)
        print(f"train step, batch {b}: {prog['bytes']} bytes", file=sys.stderr)

    model_state = state[:len(steps.param_names) + len(steps.buffer_names)]

    def flat_eval(*args):
        np_, nb = len(steps.param_names), len(steps.buffer_names)
        p = dict(zip(steps.param_names, args[:np_]))
        bf = dict(zip(steps.buffer_names, args[np_:np_ + nb]))
        logits, _ = steps.forward(p, bf, args[np_ + nb], False)
        return (logits,)

    ein = model_state + [spec("x", "data", (a.batch, 3, a.size, a.size), "float32", True)]
    eout = [spec("logits", "logits", (a.batch, a.classes), "float32", True)]
    programs["eval"] = export(flat_eval, ein, eout, [], [s["sharded"] for s in ein], [True], f"eval_b{a.batch}.mlirbc")
    programs["eval"]["batch"] = a.batch
    print(f"eval step: {programs['eval']['bytes']} bytes", file=sys.stderr)

    manifest = {
        "format": "xfer-pjrt-bundle-1",
        "arch": a.arch, "input_size": a.size, "classes": a.classes, "feature_dim": dim,
        "batch": a.batch, "devices": a.devices, "platforms": platforms,
        "optimizer": {"family": a.optimizer, "beta1": a.beta1, "beta2": a.beta2, "eps": a.eps,
                      "momentum": a.momentum, "nesterov": a.nesterov},
        "label_smoothing": a.label_smoothing,
        "state": state,
        "tensors": [spec("x", "data", (a.batch, 3, a.size, a.size), "float32", True),
                    spec("y", "labels", (a.batch,), "int32", True), spec("lr", "scalar", (), "float32"),
                    spec("weight_decay", "scalar", (), "float32"), spec("loss", "loss", (), "float32"),
                    spec("logits", "logits", (a.batch, a.classes), "float32", True)],
        "state_dict_mapping": "state entries with role param/buffer are model::Classifier's state names "
                              "(backbone.<torch state_dict key>, head.weight, head.bias); num_batches_tracked is not carried",
        "programs": programs,
        "versions": {"jax": jax.__version__, "jaxlib": jax.lib.__version__ if hasattr(jax.lib, "__version__") else "",
                     "torch": torch.__version__, "torchvision": torchvision.__version__,
                     "torchax": getattr(torchax, "__version__", "0.0.13"), "python": sys.version.split()[0]},
        "exporter": "tools/export_pjrt.py",
    }
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=0)
    print(out)

    if a.check:
        check(steps, model, params, buffers, a)


def check(steps, model, params, buffers, a):
    """Three steps of the exported train function (run by JAX here) against PyTorch eager with torch.optim."""
    import copy
    torch.manual_seed(1)
    b = a.batch
    x = torch.randn(b, 3, a.size, a.size)
    y = torch.randint(0, a.classes, (b,))
    lr, wd = 1e-4, 0.05
    ref = copy.deepcopy(model).train()
    opt = (torch.optim.AdamW(ref.parameters(), lr=lr, betas=(a.beta1, a.beta2), eps=a.eps, weight_decay=wd)
           if a.optimizer == "adamw" else
           torch.optim.SGD(ref.parameters(), lr=lr, momentum=a.momentum, nesterov=a.nesterov, weight_decay=wd))
    crit = nn.CrossEntropyLoss(label_smoothing=a.label_smoothing)
    ref_losses = []
    for _ in range(3):
        opt.zero_grad()
        loss = crit(ref(x), y)
        loss.backward()
        opt.step()
        ref_losses.append(loss.item())
    st = [jnp.asarray(t.detach().numpy()) for t in params + buffers]
    st += [jnp.zeros(s["shape"], jnp.float32) for s in [
        {"shape": [] if k == "opt/step" else list(model.state_dict()[k.split("/", 2)[2]].shape)} for k in steps.opt_names()]]
    fn = jax.jit(steps.flat_train)
    losses = []
    for _ in range(3):
        outs = fn(*st, jnp.asarray(x.numpy()), jnp.asarray(y.numpy(), jnp.int32), jnp.float32(lr), jnp.float32(wd))
        st, loss = list(outs[:-1]), float(outs[-1])
        losses.append(loss)
    ref_sd = ref.state_dict()
    # BatchNorm statistics relative to their size (deep layers' running variances are large)
    worst_buffer = max(float(np.max(np.abs(np.asarray(st[len(params) + i]) - ref_sd[k].numpy()) /
                                    np.maximum(1.0, np.abs(ref_sd[k].numpy()))))
                       for i, k in enumerate(steps.buffer_names)) if steps.buffer_names else 0.0
    moved = any(float(np.max(np.abs(np.asarray(st[len(params) + i]) - buffers[i].numpy()))) > 0
                for i in range(len(buffers)))
    print(json.dumps({"torch_losses": ref_losses, "jax_losses": losses, "max_buffer_diff": worst_buffer,
                      "buffers_moved": moved}))
    ok = all(abs(p - q) <= 1e-3 * max(1.0, abs(p)) for p, q in zip(ref_losses, losses)) and worst_buffer < 5e-3
    ok = ok and (moved or not buffers)
    if not ok:
        sys.exit("check failed: the exported step does not match PyTorch eager")


if __name__ == "__main__":
    main()
