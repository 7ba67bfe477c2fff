// train/precision: what a trial's precision word means on the device it runs on — the one place the engine asks
// whether to autocast (and to which type), to scale the loss, to let float32 matmuls and convolutions use TF32, to
// let cuDNN pick its fastest algorithms, and to use the fused optimizer kernels. Plain C++, tested on any machine.
#pragma once

#include <string>

#include "xfer/core/vocabulary.hpp"

namespace xfer::train {

struct PrecisionPlan {
  bool autocast = false;         // around forward + loss
  bool bf16 = false;             // autocast's type: bf16, else fp16
  bool loss_scaling = false;     // fp16: dynamic loss scale (train/loss_scale.hpp), gradients unscaled before the step
  bool tf32 = false;             // float32 matmuls/convolutions on tensor cores (Ampere and later)
  bool cudnn_benchmark = false;  // cuDNN tries its algorithms once per shape (fixed shapes: every step alike)
  bool fused_optimizer = false;  // one kernel over all parameters (ATen's _fused_adamw_/_fused_sgd_)
  std::string note;              // why the word does not apply here, for the trial's log; "" when it does
};

// `cuda`: the trial's device is a GPU. `fused_kernels`: the LibTorch in use has the fused optimizer kernels for it
// (LibTorch ≥ 2.0 on CUDA). auto = bf16 on CUDA, fp32 on the CPU (LibTorch's CPU autocast is slower than fp32 for the
// paper's models, and not what the paper's GPU runs did); fp16 and bf16 apply on CUDA only.
PrecisionPlan plan_precision(Precision p, bool cuda, bool fused_kernels);

}  // namespace xfer::train
