#!/usr/bin/env bash
# The first GPU machine in one command: a machine with one NVIDIA GPU, CMake, a compiler and a CUDA PyTorch 2.x wheel,
# nothing of xfer's but this repository, no internet. Every stage has its own timeout, cut to what is left of the
# script's budget (450 s; XFER_FIRST_CONTACT_BUDGET): the whole run ends in under 8 minutes whatever hangs, a stage
# with no time left is skipped and says so. Stages run in the order below, the PJRT leg before the benchmark.
#   RESULTS=<folder> bench/gpu/first_contact.sh [--dry-run]
#   0 probe    GPU, driver, torch / CUDA / NCCL / cuDNN versions, nvcc, cmake, the wheel's C++ ABI      (30 s)
#   1 build    bench/gpu (compute_bench + gpu_smoke, LibTorch and NCCL only) into $XFER_GPU_BUILD — the work tree's
#              build-gpu/ unless set, never the result folder. With nvcc: find_package(Torch) over the wheel; without
#              (or when that configure fails): plain include and link flags over the wheel (gpu-review C3)   (420 s)
#   2 smoke    gpu_smoke: fused SGD/AdamW vs torch::optim, autocast, the 1-rank NCCL bucketed exchange through the
#              hooks, the unscale kernel, destruction after an abandoned attempt, the out-of-memory retry     (120 s)
#   3 pjrt     the PJRT leg, independent of the LibTorch build: bench/gpu/pjrt_smoke built on its own (src/pjrt and the
#              vendored headers: bench/gpu/pjrt/CMakeLists.txt) into $XFER_GPU_BUILD/pjrt; a CUDA PJRT plugin found
#              ($XFER_PJRT_CUDA_PLUGIN, else the JAX CUDA plugin's .so in $PYTHON's site-packages); the committed
#              tiny_cnn program's cuda export run for 5 steps on synthetic batches and its losses compared with the
#              CPU plugin's committed in bench/gpu/pjrt_smoke_reference.json (tolerance 1e-3 of max(1, |loss|));
#              a CPU plugin on the machine ($XFER_PJRT_CPU_PLUGIN, else build/pjrt-cpu) reruns the reference first.
#              No CUDA plugin: "skipped" in the summary, rc 0                                                  (120 s)
#   4 bench    gpu_bench.py: ResNet-50 and ViT-B/16 at batch 128, ResNet-50 at batch 32 (the per-step host
#              synchronisations show there); 2 runs per side, sides alternating, medians                      (300 s, or what is left)
# RESULTS gets only small files: probe.txt, <stage>.log, smoke.json, bench-*.json, pjrt-*.json, first_contact.json,
# summary.md.
# --dry-run: the same stages on the CPU where there is no GPU (./run test: test torch2.first_contact_dry_run) — the
# no-toolkit build over the wheel's CPU libraries (XFER_TORCH_SITE, e.g. ./run torch2's build/torch2/site),
# gpu_smoke --cpu, the benchmark's --smoke, and the PJRT leg on the CPU plugin (build/pjrt-cpu: ./run pjrt-plugin)
# running the cuda program (pjrt_smoke --as-platform cuda) against the reference at 1e-5; the Python side is $PYTHON
# (default python3).
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

# The whole script's budget: each stage's timeout is cut to what is left of it, and a stage with under 20 s left is
# skipped (rc 125 in the summary), so the run ends inside the budget whatever hangs — 450 s on a GPU machine (the
# device loans here are 15 minutes with the machine's start), none for --dry-run (./run test's 2 cores).
BUDGET=${XFER_FIRST_CONTACT_BUDGET:-$([ $DRY -eq 1 ] && echo 0 || echo 450)}
# stage NAME SECONDS COMMAND...: runs it under a timeout, its output in $L/NAME.log; records rc and seconds.
stage() {
  local name=$1 limit=$2 t0=$SECONDS rc
  shift 2
  if [ "$BUDGET" -gt 0 ]; then
    local left=$((BUDGET - SECONDS - 10))
    [ $left -lt $limit ] && limit=$left
    if [ $limit -lt 20 ]; then
      echo "== $name: skipped, ${left} s left of the ${BUDGET} s budget" | tee "$L/$name.log" >&2
      STAGES+=("{\"stage\": \"$name\", \"rc\": 125, \"seconds\": 0, \"timed_out\": false, \"skipped\": true}")
      return 125
    fi
  fi
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
# The JAX CUDA plugin: the PJRT C API shared object in a jax_plugins/xla_cuda* package of $PY's site-packages.
find_cuda_plugin() {
  [ -n "${XFER_PJRT_CUDA_PLUGIN:-}" ] && { echo "$XFER_PJRT_CUDA_PLUGIN"; return; }
  "$PY" - <<'PY' 2>/dev/null
import glob, os, site, sys
dirs = [d for d in site.getsitepackages() + [site.getusersitepackages()] + sys.path if os.path.isdir(d)]
for d in dirs:
    for name in ("xla_cuda_plugin.so", "pjrt_c_api_gpu_plugin.so"):
        hits = sorted(glob.glob(os.path.join(d, "jax_plugins", "xla_cuda*", name)), reverse=True)  # cuda13 first
        if hits:
            print(hits[0])
            raise SystemExit(0)
PY
}

pjrt() {
  local bundle="$ROOT/tests/pjrt/tiny_cnn.pjrt/s32-c10-b16-adamw-d1" ref="$ROOT/bench/gpu/pjrt_smoke_reference.json"
  local cpu=${XFER_PJRT_CPU_PLUGIN:-$ROOT/build/pjrt-cpu/lammps_jax_pjrt_cpu/pjrt_c_api_cpu_plugin.so} cuda as=() tol=1e-3
  rm -f "$L/pjrt.txt" "$L"/pjrt-*.json
  if [ $DRY -eq 1 ]; then
    cuda=$cpu as=(--as-platform cuda) tol=1e-5  # the cuda program on the CPU plugin
  else
    cuda=$(find_cuda_plugin)
  fi
  if [ -z "$cuda" ] || [ ! -f "$cuda" ]; then
    echo "skipped: no CUDA PJRT plugin found (XFER_PJRT_CUDA_PLUGIN, or jax_plugins/xla_cuda*/ in $PY's site-packages)" |
      tee "$L/pjrt.txt"
    return 0
  fi
  echo "CUDA PJRT plugin: $cuda$([ $DRY -eq 1 ] && echo ' (dry run: the CPU plugin, running the cuda program)')"
  local type=Release
  [ $DRY -eq 1 ] && type=None
  cmake -S "$ROOT/bench/gpu/pjrt" -B "$B/pjrt" -DCMAKE_BUILD_TYPE=$type $(command -v ninja >/dev/null && echo -GNinja) &&
    cmake --build "$B/pjrt" -j "$(nproc)" || return 1
  local smoke=("$B/pjrt/pjrt_smoke" --bundle "$bundle-cuda" --bundle "$bundle" --steps 5 --reference "$ref")
  if [ -f "$cpu" ]; then
    echo "== CPU plugin $cpu: the reference"
    "${smoke[@]}" --plugin "$cpu" --tolerance 1e-5 --json "$L/pjrt-cpu.json" || return 1
  else
    echo "no CPU PJRT plugin here ($cpu): the committed reference alone"
  fi
  echo "== $cuda"
  # The plugin finds CUDA, cuDNN and NCCL through its RPATH (site-packages/nvidia/*/lib); the path helps other layouts.
  local site nvidia=""
  site=$(cd "$(dirname "$cuda")/../.." && pwd)
  for d in "$site"/nvidia/*/lib; do [ -d "$d" ] && nvidia="$nvidia${nvidia:+:}$d"; done
  LD_LIBRARY_PATH="$nvidia${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "${smoke[@]}" --plugin "$cuda" "${as[@]}" --tolerance $tol \
    --json "$L/pjrt-cuda.json"
}
export ROOT DRY L B PY XFER_TORCH_SITE
export -f probe build smoke bench find_cuda_plugin pjrt

stage probe 30 probe
cp "$L/probe.log" "$L/probe.txt"
# 420 s is for the GPU machine's cores; the dry run builds on whatever this machine has left (./run test: 2 cores).
built=0
stage build $([ $DRY -eq 1 ] && echo 1800 || echo 420) build && built=1
[ $built -eq 1 ] && stage smoke 120 smoke
# The PJRT leg before the benchmark: short, and it needs nothing of the LibTorch build; the benchmark gets what is left.
stage pjrt 120 pjrt
if [ $built -eq 1 ]; then
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
    print("| %s | %d%s | %d |" % (d["stage"], d["rc"], " (timed out)" if d["timed_out"] else (" (skipped: no time left)" if d.get("skipped") else ""), d["seconds"]))'

  echo
  [ -f "$L/smoke.log" ] && { echo '```'; cat "$L/smoke.log"; echo '```'; echo; }
  [ -f "$L/bench.log" ] && grep -E '^(GPU:|\|)' "$L/bench.log"
  echo
  echo "PJRT leg:"
  echo '```'
  grep -E '^(skipped|CUDA PJRT plugin|plugin |step |eval|against|pjrt_smoke:|==)' "$L/pjrt.log"
  echo '```'
} >"$L/summary.md"
# The PJRT leg's record: skipped (why), or each side's losses and the comparison.
pjrt_json=$("$PY" -c 'import json, os, sys
skipped, cuda, cpu = sys.argv[1:]
r = None
if os.path.exists(skipped):
    r = {"skipped": open(skipped).read().strip()}
elif os.path.exists(cuda):
    r = {}
    for side, path in (("cuda", cuda), ("cpu", cpu)):
        if os.path.exists(path):
            j = json.load(open(path))
            r[side] = {k: j.get(k) for k in ("plugin", "platform", "api_version", "program_platform", "losses",
                                              "eval_loss", "compile_seconds", "step_ms", "peak_device_bytes", "comparison")}
print(json.dumps(r))' "$L/pjrt.txt" "$L/pjrt-cuda.json" "$L/pjrt-cpu.json")
(IFS=,; echo "{\"dry_run\": $([ $DRY -eq 1 ] && echo true || echo false), \"stages\": [${STAGES[*]}], \"pjrt\": $pjrt_json}") >"$L/first_contact.json"
echo "first_contact: $L/summary.md" >&2
for s in "${STAGES[@]}"; do
  case "$s" in *'"rc": 0,'*) ;; *) exit 1 ;; esac
done
