"""The one-trial spec the trainer benchmarks run (trainer_bench.py, overlap_bench.py): a backbone on an ImageFolder,
AdamW at lr 1e-3 and wd 1e-4, the given epochs, batch and input size."""
import os


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
