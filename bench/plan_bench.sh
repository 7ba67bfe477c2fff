#!/bin/sh
# `xfer plan` on a 10^7-trial grid (B11 of the reliability probe): 1 model × 1 dataset × 100 learning rates × 100
# weight decays × 1000 seeds. Reports wall time and maximum resident set size (GNU time), and checks the output.
# The dataset is Debian's Fashion-MNIST (dataset-fashion-mnist, IDX files) when installed, so plan opens real data
# as it would on a login node; otherwise it is planned from the catalog.
#   bench/plan_bench.sh [path/to/xfer] [seeds]     # seeds: 1000 → 10^7 trials (default); 10000 → 10^8 (refused)
set -eu
XFER=${1:-build/xfer}
SEEDS=${2:-1000}
[ -x "$XFER" ] || { echo "plan_bench: $XFER is not an executable (build it first)" >&2; exit 2; }
[ -x /usr/bin/time ] || { echo "plan_bench: needs GNU time (/usr/bin/time, Debian package time)" >&2; exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf "PK\003\004" > "$tmp/m.pt"   # plan checks the zip magic; it does not load it
root=/usr/share/datasets/fashion-mnist
python3 - "$tmp/huge.toml" "$SEEDS" "$root" <<'PY'
import os, sys
path, seeds, root = sys.argv[1], int(sys.argv[2]), sys.argv[3]
dataset = (f'kind = "idx"\nroot = "{root}"\nmetric = "accuracy"\n' if os.path.exists(root)
           else 'kind = "eurosat"\n')  # no root: planned from the catalog
with open(path, "w") as f:
    f.write('[study]\nname = "huge"\nresults = "out/huge.h5"\n\n'
            '[[model]]\nname = "squeezenet1_1"\nbackbone = "m.pt"\nimagenet_top1 = 58.2\ngmacs = 0.35\n\n'
            '[[dataset]]\nname = "fashion_mnist"\n' + dataset + 'input_size = 32\n\n'
            '[grid]\nepochs = 3\nbatch_size = 64\ninput_size = 32\n'
            f'seeds = [{", ".join(str(s) for s in range(seeds))}]\n'
            f'weight_decays = [{", ".join(repr(i * 1e-6) for i in range(100))}]\n\n'
            '[[grid.optimizer]]\nfamily = "adamw"\n'
            f'lrs = [{", ".join(repr((i + 1) * 1e-5) for i in range(100))}]\n')
PY
set +e
/usr/bin/time -f '%e s %M KB' -o "$tmp/time" "$XFER" plan "$tmp/huge.toml" > "$tmp/out" 2> "$tmp/err"
rc=$?
set -e
echo "xfer plan, $((SEEDS * 10000)) trials: $(tail -n 1 "$tmp/time") (elapsed, max RSS), exit $rc"
grep -E '^(Study|Total)' "$tmp/out" || true
[ -s "$tmp/err" ] && sed 's/^/stderr: /' "$tmp/err"
exit 0
