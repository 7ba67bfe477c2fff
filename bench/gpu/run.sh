#!/usr/bin/env bash
# The GPU benchmark and smoke checks in one go: bench/gpu/first_contact.sh with its results in build-gpu-results/
# (RESULTS overrides). The build goes to $XFER_GPU_BUILD (default build-gpu/ in the work tree) and needs no CUDA
# toolkit; no generic variable (OUT) decides where (gpu-review C3, C4). For other gpu_bench.py options, run it on the
# built compute_bench:  python3 bench/gpu/gpu_bench.py --compute build-gpu/compute_bench --batch 64 ...
set -euo pipefail
ROOT=$(cd "$(dirname "$(readlink -f "$0")")/../.." && pwd)
RESULTS=${RESULTS:-$ROOT/build-gpu-results} exec "$ROOT/bench/gpu/first_contact.sh" "$@"
