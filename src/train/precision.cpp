#include "xfer/train/precision.hpp"

namespace xfer::train {

PrecisionPlan plan_precision(Precision p, bool cuda, bool fused_kernels) {
  PrecisionPlan plan;
  if (!cuda) {
    if (p == Precision::fp16 || p == Precision::bf16)
      plan.note = "precision " + std::string(name(p)) + " applies on CUDA; training in fp32 on the CPU";
    return plan;
  }
  plan.autocast = p != Precision::fp32;
  plan.bf16 = p != Precision::fp16;
  plan.loss_scaling = p == Precision::fp16;
  // TF32 (a 10-bit mantissa) only where the word already trades precision for speed: under autocast. fp32 means
  // float32 matmuls and convolutions (LibTorch's own default lets cuDNN use TF32; the engine turns that off too).
  plan.tf32 = plan.autocast;
  plan.cudnn_benchmark = true;
  plan.fused_optimizer = fused_kernels;
  return plan;
}

}  // namespace xfer::train
