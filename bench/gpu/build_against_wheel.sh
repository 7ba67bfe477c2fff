#!/usr/bin/env bash
# Checks that xfer's trainer builds against the LibTorch a GPU cluster user has: the CUDA LibTorch inside PyPI's torch
# wheel (2.x), with the NCCL that wheel depends on (nvidia-nccl-cu*) found beside it. Downloads both wheels (no
# install; ~0.6 GB) into $WHEEL_DIR (default build-wheel/), unpacks what a C++ build needs, configures the whole
# project with CMAKE_PREFIX_PATH at the wheel's torch folder and builds the trainer module (libxfer_trainer.so: the
# LibTorch engine, the NCCL gradient exchange, the device input pipeline, the fused optimizers), the xfer binary,
# compute_bench and the trainer's test binaries. Nothing runs: this machine has no GPU. Needs the CUDA toolkit (nvcc)
# and xfer's Debian packages (./run build installs them). Not part of ./run test.
#   bench/gpu/build_against_wheel.sh            TORCH_VERSION=2.15.0 by default
# The wheel's libraries need its other nvidia-* wheels (cuDNN, cuSPARSELt, NVSHMEM) at run time; they are not
# downloaded for a build check, so executables link with --allow-shlib-undefined.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/../.."
W=${WHEEL_DIR:-build-wheel}
mkdir -p "$W/dl" "$W/site"
W=$(cd "$W" && pwd)
TORCH_VERSION=${TORCH_VERSION:-2.15.0}
PY=${PYTHON:-python3}
NVCC=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
t0=$SECONDS
wheel=$(ls "$W"/dl/torch-"$TORCH_VERSION"-*.whl 2>/dev/null | head -1 || true)
if [ -z "$wheel" ]; then
  "$PY" -m pip download --quiet --no-deps "torch==$TORCH_VERSION" -d "$W/dl"
  wheel=$(ls "$W"/dl/torch-"$TORCH_VERSION"-*.whl | head -1)
fi
nccl=$(unzip -p "$wheel" 'torch-*.dist-info/METADATA' | sed -n 's/^Requires-Dist: \(nvidia-nccl-cu[0-9]*==[0-9.]*\).*/\1/p' | head -1)
[ -n "$nccl" ] || { echo "the torch wheel names no nvidia-nccl dependency: not a CUDA wheel?" >&2; exit 1; }
ls "$W"/dl/nvidia_nccl*.whl >/dev/null 2>&1 || "$PY" -m pip download --quiet --no-deps "$nccl" -d "$W/dl"
if [ ! -f "$W/site/torch/share/cmake/Torch/TorchConfig.cmake" ]; then
  unzip -q -o "$wheel" 'torch/include/*' 'torch/lib/*' 'torch/share/*' -d "$W/site"
  unzip -q -o "$W"/dl/nvidia_nccl*.whl 'nvidia/*' -d "$W/site"
fi
echo "[wheel] torch $TORCH_VERSION and $nccl unpacked in $((SECONDS - t0)) s" >&2
cmake -S . -B "$W/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$W/site/torch" \
  -DCMAKE_CUDA_COMPILER="$NVCC" -DCMAKE_EXE_LINKER_FLAGS=-Wl,--allow-shlib-undefined >"$W/configure.log" 2>&1 ||
  { tail -40 "$W/configure.log"; exit 1; }
grep -q "xfer: LibTorch $TORCH_VERSION" "$W/configure.log" || { echo "configured against another LibTorch:" >&2; grep "xfer: LibTorch" "$W/configure.log" >&2; exit 1; }
grep "NCCL for the gradient exchange" "$W/configure.log" >&2 || { echo "NCCL not found beside the wheel" >&2; exit 1; }
cmake --build "$W/build" -j "$(nproc)" --target xfer_trainer xfer compute_bench train_engine_test device_input_test
nm -DC "$W/build/libxfer_trainer.so" | grep -q " U ncclAllReduce" || { echo "libxfer_trainer.so does not call NCCL" >&2; exit 1; }
echo "[wheel] built against LibTorch $TORCH_VERSION (CUDA) with NCCL in $((SECONDS - t0)) s: libxfer_trainer.so calls ncclAllReduce" >&2
