// The trainer module's entry points (libxfer_trainer.so), looked up by name with dlsym (train/trial.cpp): the xfer
// executable does not link LibTorch, so commands that do not train start in milliseconds instead of a second. The
// epoch loop is train/epoch_loop.cpp; the LibTorch engine it drives is train/torch_engine.cpp.
#include <ATen/detail/CUDAHooksInterface.h>
#include <torch/cuda.h>
#include <torch/version.h>

#include "pjrt_engine.hpp"
#include "torch_engine.hpp"
#include "xfer/model/classifier.hpp"
#include "xfer/train/epoch_loop.hpp"
#include "xfer/train/trial.hpp"

extern "C" __attribute__((visibility("default"))) void xfer_trainer_run(const xfer::grid::TrialConfig* t,
                                                                         const xfer::data::Dataset* d,
                                                                         const xfer::train::Environment* env,
                                                                         xfer::train::Result* out) {
  xfer::train::SoloGroup solo;
  xfer::train::Group& g = env->group ? *env->group : solo;
  if (xfer::train::is_pjrt_device(env->device))
    *out = xfer::train::run_epochs(*t, *d, *env, g, xfer::train::PjrtEngineFactory{});
  else
    *out = xfer::train::run_epochs(*t, *d, *env, g, xfer::train::TorchEngineFactory{});
  // The trial's tensors are freed: give the heap kept by model::keep_host_memory back to the system, so a rank's
  // next trial (another model, other sizes) starts from a trimmed heap.
  xfer::model::release_host_memory();
}

extern "C" __attribute__((visibility("default"))) void xfer_trainer_backend(xfer::train::Backend* out) {
  out->torch_version = TORCH_VERSION;
  // The versions LibTorch's CUDA library was built with; a CPU-only LibTorch has none (its hooks throw).
  const auto& hooks = at::detail::getCUDAHooks();
  bool cuda_build = true;
  try {
    out->cuda_version = xfer::train::cuda_version_text(hooks.versionCUDART());
  } catch (const c10::Error&) {
    cuda_build = false;
    out->cuda_version = "none (CPU build)";
  }
  if (!cuda_build) {
    out->cudnn_version = "none (CPU build)";
  } else if (!hooks.compiledWithCuDNN()) {
    out->cudnn_version = "none (LibTorch built without cuDNN)";
  } else {
    try {
      out->cudnn_version = xfer::train::cudnn_version_text(hooks.versionCuDNN());
    } catch (const c10::Error& e) {
      out->cudnn_version = std::string("unknown (") + e.what_without_backtrace() + ")";
    }
  }
  out->cuda_devices = torch::cuda::is_available() ? static_cast<int>(torch::cuda::device_count()) : 0;
  out->devices = torch::cuda::is_available() ? std::to_string(torch::cuda::device_count()) + " CUDA device(s)" : "cpu";
}
