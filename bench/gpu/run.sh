#!/usr/bin/env bash
# The GPU benchmark in one go, on a machine with one NVIDIA GPU, CMake, a compiler and a CUDA PyTorch wheel — nothing
# else of xfer's: builds bench/trainer's compute_bench (LibTorch only) against the wheel's own LibTorch, then runs
# bench/gpu/gpu_bench.py (ResNet-50 and ViT-B/16, 224 px, batch 128, bf16: xfer and PyTorch eager, ratio, MFU).
# Finishes in a few minutes on an H100.   bench/gpu/run.sh [gpu_bench.py options]
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/../.."
PY=${PYTHON:-python3}
OUT=${OUT:-build-gpu}
PREFIX=$("$PY" -c 'import torch; print(torch.utils.cmake_prefix_path)')
t0=$SECONDS
cmake -S bench/trainer -B "$OUT" -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$PREFIX" >"$OUT.configure.log" 2>&1 ||
  { tail -40 "$OUT.configure.log"; exit 1; }
cmake --build "$OUT" -j "$(nproc)" >"$OUT.build.log" 2>&1 || { tail -40 "$OUT.build.log"; exit 1; }
echo "[gpu] compute_bench built against $PREFIX in $((SECONDS - t0)) s" >&2
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader >&2 || true
"$PY" bench/gpu/gpu_bench.py --compute "$OUT/compute_bench" --out "$OUT" "$@"
