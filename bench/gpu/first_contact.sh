#!/usr/bin/env bash
# The first GPU machine in one command: a machine with one NVIDIA GPU, CMake, a compiler and a CUDA PyTorch 2.x wheel,
# nothing of xfer's but this repository, no internet. Every stage has its own timeout; the whole run ends in under
# 8 minutes on an H100 (~4 of them the benchmark).
#   RESULTS=<folder> bench/gpu/first_contact.sh [--dry-run]
#   0 probe    GPU, driver, torch / CUDA / NCCL / cuDNN versions, nvcc, cmake, the wheel's C++ ABI      (30 s)
#   1 build    bench/gpu (compute_bench + gpu_smoke, LibTorch and NCCL only) into $XFER_GPU_BUILD — the work tree's
#              build-gpu/ unless set, never the result folder. With nvcc: find_package(Torch) over the wheel; without
#              (or when that configure fails): plain include and link flags over the wheel (gpu-review C3)   (420 s)
#   2 smoke    gpu_smoke: fused SGD/AdamW vs torch::optim, autocast, the 1-rank NCCL bucketed exchange through the
#              hooks, the unscale kernel, destruction after an abandoned attempt, the out-of-memory retry     (120 s)
#   3 bench    gpu_bench.py: ResNet-50 and ViT-B/16 at batch 128, ResNet-50 at batch 32 (the per-step host
#              synchronisations show there); 2 runs per side, sides alternating, medians                      (300 s)
# RESULTS gets only small files: probe.txt, <stage>.log, smoke.json, bench-*.json, first_contact.json, summary.md.
# --dry-run: the same stages on the CPU where there is no GPU (./run test: test torch2.first_contact_dry_run) — the
# no-toolkit build over the wheel's CPU libraries (XFER_TORCH_SITE, e.g. ./run torch2's build/torch2/site),
# gpu_smoke --cpu, the benchmark's --smoke; the Python side is $PYTHON (default python3).
set -uo pipefail
ROOT=$(cd "$(dirname "$(readlink -f "$0")")/../.." && pwd)
XFER_TORCH_SITE=${XFER_TORCH_SITE:-}
DRY=0
[ "${1:-}" = "--dry-run" ] && DRY=1
L=${RESULTS:?RESULTS=<folder for the summary, logs and JSON>}
mkdir -p "$L"
L=$(cd "$L" && pwd)
B=${XFER_GPU_BUILD:-$ROOT/build-gpu}
case "$B/" in "$L"/*) echo "first_contact: XFER_GPU_BUILD ($B) must not be inside RESULTS ($L)" >&2; exit 2 ;; esac
PY=${PYTHON:-python3}
STAGES=()

# stage NAME SECONDS COMMAND...: runs it under a timeout, its output in $L/NAME.log; records rc and seconds.
stage() {
  local name=$1 limit=$2 t0=$SECONDS rc
  shift 2
  echo "== $name (timeout ${limit} s)" >&2
  timeout --kill-after=10 "$limit" bash -c '"$@"' _ "$@" >"$L/$name.log" 2>&1
  rc=$?
  tail -5 "$L/$name.log" >&2
  STAGES+=("{\"stage\": \"$name\", \"rc\": $rc, \"seconds\": $((SECONDS - t0)), \"timed_out\": $([ $rc -eq 124 ] || [ $rc -eq 137 ] && echo true || echo false)}")
  return $rc
}

probe() {
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader || echo "nvidia-smi: none"
  "$PY" - <<'PY'
import os
try:
    import torch
except ImportError as e:
    print("torch: not importable:", e)
    raise SystemExit(0)
cuda = torch.cuda.is_available()
print("torch", torch.__version__, "cuda", torch.version.cuda, "cxx11_abi", int(torch._C._GLIBCXX_USE_CXX11_ABI))
print("site", os.path.dirname(os.path.dirname(torch.__file__)))
print("cmake_prefix_path", torch.utils.cmake_prefix_path)
if cuda:
    print("gpu", torch.cuda.get_device_name(), "nccl", torch.cuda.nccl.version(), "cudnn", torch.backends.cudnn.version())
try:
    import torchvision
    print("torchvision", torchvision.__version__)
except ImportError:
    print("torchvision: none")
try:
    import jax
    print("jax", jax.__version__, "devices", jax.devices())
except Exception as e:
    print("jax: none", type(e).__name__)
PY
  echo "nvcc: $(command -v nvcc || ls /usr/local/cuda*/bin/nvcc 2>/dev/null | head -1 || echo none)"
  echo "cmake: $(cmake --version | head -1)"
  echo "c++: $(c++ --version | head -1)"
  echo "cpus: $(nproc)"
}

build() {
  local nvcc site abi
  nvcc=$(command -v nvcc || ls /usr/local/cuda*/bin/nvcc 2>/dev/null | head -1 || true)
  site=${XFER_TORCH_SITE:-$(sed -n 's/^site //p' "$L/probe.txt")}
  abi=$(sed -n 's/.* cxx11_abi \([01]\).*/\1/p' "$L/probe.txt")
  local plain=(-DXFER_TORCH_SITE="$site" -DXFER_TORCH_CXX11_ABI="${abi:-1}")
  # The dry run checks the plumbing, not the speed: unoptimised (build type None: no -O), which compiles the heavy
  # LibTorch translation units in about half the time inside ./run test.
  local type=Release
  [ $DRY -eq 1 ] && plain+=(-DXFER_GPU_CUDA=OFF) && type=None
  if [ $DRY -eq 0 ] && [ -n "$nvcc" ] && [ ! -f "$B/.plain" ]; then
    echo "configure: nvcc at $nvcc, find_package(Torch)"
    cmake -S "$ROOT/bench/gpu" -B "$B" -DCMAKE_BUILD_TYPE=Release $(command -v ninja >/dev/null && echo -GNinja) -DCMAKE_CUDA_COMPILER="$nvcc" \
      -DCMAKE_PREFIX_PATH="$(sed -n 's/^cmake_prefix_path //p' "$L/probe.txt")" ||
      { echo "configure with the toolkit failed: plain flags instead"; rm -rf "$B"; mkdir -p "$B"; touch "$B/.plain"; }
  fi
  if [ ! -f "$B/CMakeCache.txt" ]; then
    echo "configure: no toolkit (or it failed): plain flags over the wheel in $site"
    cmake -S "$ROOT/bench/gpu" -B "$B" -DCMAKE_BUILD_TYPE=$type $(command -v ninja >/dev/null && echo -GNinja) "${plain[@]}" || return 1
  fi
  cmake --build "$B" -j "$(nproc)" --target gpu_smoke compute_bench
}

smoke() {
  if [ $DRY -eq 1 ]; then "$B/gpu_smoke" --cpu --json "$L/smoke.json"; else "$B/gpu_smoke" --json "$L/smoke.json"; fi
}
bench() {
  local g=("$PY" "$ROOT/bench/gpu/gpu_bench.py" --compute "$B/compute_bench" --out "$B" --repeats 2)
  if [ $DRY -eq 1 ]; then
    "${g[@]}" --smoke --models resnet50 --size 32 --json bench-smoke.json
  else
    "${g[@]}" --batch 128 --steps 60 --warmup 10 --json bench-128.json &&
      "${g[@]}" --models resnet50 --batch 32 --steps 60 --warmup 10 --json bench-32.json
  fi
}
export ROOT DRY L B PY XFER_TORCH_SITE
export -f probe build smoke bench

stage probe 30 probe
cp "$L/probe.log" "$L/probe.txt"
# 420 s is for the GPU machine's cores; the dry run builds on whatever this machine has left (./run test: 2 cores).
if stage build $([ $DRY -eq 1 ] && echo 1800 || echo 420) build; then
  stage smoke 120 smoke
  stage bench 300 bench
  cp "$B"/bench-*.json "$L/" 2>/dev/null
fi

# The summary: stages, the smoke's lines, the benchmark's table.
{
  echo "# xfer first contact$([ $DRY -eq 1 ] && echo ' (dry run, CPU)')"
  echo
  echo '```'
  cat "$L/probe.txt"
  echo '```'
  echo
  echo "| stage | rc | seconds |"
  echo "|---|---|---|"
  printf '%s\n' "${STAGES[@]}" | "$PY" -c 'import json, sys
for line in sys.stdin:
    d = json.loads(line)
    print("| %s | %d%s | %d |" % (d["stage"], d["rc"], " (timed out)" if d["timed_out"] else "", d["seconds"]))'

  echo
  [ -f "$L/smoke.log" ] && { echo '```'; cat "$L/smoke.log"; echo '```'; echo; }
  [ -f "$L/bench.log" ] && grep -E '^(GPU:|\|)' "$L/bench.log"
} >"$L/summary.md"
(IFS=,; echo "{\"dry_run\": $([ $DRY -eq 1 ] && echo true || echo false), \"stages\": [${STAGES[*]}]}") >"$L/first_contact.json"
echo "first_contact: $L/summary.md" >&2
for s in "${STAGES[@]}"; do
  case "$s" in *'"rc": 0,'*) ;; *) exit 1 ;; esac
done
