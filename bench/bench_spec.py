"""What the trainer benchmarks (trainer_bench.py, overlap_bench.py) share: running a command, their data (ImageFolders
of 256-px JPEGs) and backbones (random weights), and the one-trial spec they run — a backbone on an ImageFolder,
AdamW at lr 1e-3 and wd 1e-4, the given epochs, batch and input size."""
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(HERE)
PY = "/usr/bin/python3"


def sh(cmd, **kw):
    """Runs cmd; its stdout and wall seconds. Exits with its output when it fails."""
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}")
    return r.stdout, dt


def make_image_folders(root, n_train, n_test):
    """root/train and root/test of distinct 256-px JPEGs (bench/make_jpegs.py), unless they exist."""
    if not os.path.isdir(os.path.join(root, "test")):
        sh([PY, os.path.join(HERE, "make_jpegs.py"), os.path.join(root, "train"), str(n_train), "7"])
        sh([PY, os.path.join(HERE, "make_jpegs.py"), os.path.join(root, "test"), str(n_test), "8"])


def export_models(models_dir, names):
    """The backbones at random weights (tools/export_backbones.py), unless they exist."""
    if not all(os.path.exists(os.path.join(models_dir, n + ".pt")) for n in names):
        sh([PY, os.path.join(SRC, "tools", "export_backbones.py"), *names, "--random-init", "--out", models_dir])


def write_trial_spec(path, study, work, name, models_dir, root, epochs, batch, size):
    with open(path, "w") as f:
        f.write(f"""[study]
name = "{study}"
results = "{work}/unused.h5"
[[model]]
name = "{name}"
backbone = "{os.path.join(models_dir, name + '.pt')}"
[[dataset]]
name = "synthetic"
kind = "imagefolder"
root = "{root}"
[grid]
epochs = {epochs}
batch_size = {batch}
input_size = {size}
weight_decays = [1e-4]
[[grid.optimizer]]
family = "adamw"
lrs = [1e-3]
""")
    return path
