// The fused optimizer steps against torch::optim (LibTorch 2.x: the torch2 build, where ATen's _fused_sgd_ and
// _fused_adamw_ have CPU kernels; Debian's 1.13 has neither, so those tests exist only there), and the CUDA
// fast-math switches: TF32 set both ways, through the API that LibTorch in use does not deprecate.
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <torch/torch.h>
#include <torch/version.h>

#include "xfer/model/classifier.hpp"
#if TORCH_VERSION_MAJOR >= 2
#include "optimizer_parity.hpp"  // the optimizer state map's key is the TensorImpl* only from 2.0 on
#endif

namespace xfer {
namespace {

#if TORCH_VERSION_MAJOR >= 2
TEST(FusedOptimizer, EqualsTorchOptimForMomentumZeroAndNinetyWithAndWithoutNesterovOverThreeSteps) {
  ASSERT_TRUE(train::fused_optimizer_available());
  for (const auto& c : gpu_check::optimizer_cases()) {
    SCOPED_TRACE(c.name);
    gpu_check::OptimizerParity r;
    // Momentum 0 is a valid spec value (range [0, 1)); the kernel refuses momentum buffers with it (gpu-review C1).
    ASSERT_NO_THROW(r = gpu_check::compare_fused_optimizer(c, torch::kCPU, 3));
    EXPECT_LT(r.max_parameter_difference, 1e-6);
    EXPECT_LT(r.max_state_difference, 1e-6);
    EXPECT_EQ(r.fused_states, r.reference_states) << "the state a checkpoint saves is the same whichever step ran";
    if (!c.adamw && c.momentum == 0) {
      EXPECT_EQ(r.fused_states, 0u) << "torch.optim keeps no buffer without momentum";
    }
  }
}

TEST(FusedOptimizer, AStepThatFindsNoGradientChangesNothing) {
  auto p = torch::ones({3}).set_requires_grad(true);
  torch::optim::SGD opt({p}, torch::optim::SGDOptions(0.1).momentum(0));
  train::fused_sgd_step(opt, {p}, 0.1, 0.0, false, 0.0);
  EXPECT_TRUE(torch::equal(p, torch::ones({3})));
  EXPECT_TRUE(opt.state().empty());
}
#endif

// The switches are process-wide flags of ATen's context; on a machine without a GPU they are still set and read.
bool tf32_matmul() {
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 9)
  return at::globalContext().float32Precision(at::Float32Backend::CUDA, at::Float32Op::MATMUL) ==
         at::Float32Precision::TF32;
#else
  return at::globalContext().allowTF32CuBLAS();
#endif
}
bool tf32_conv() {
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 9)
  return at::globalContext().float32Precision(at::Float32Backend::CUDA, at::Float32Op::CONV) ==
         at::Float32Precision::TF32;
#else
  return at::globalContext().allowTF32CuDNN();
#endif
}

// Collects what LibTorch warns (TORCH_WARN) while it lives.
class Warnings : public c10::WarningHandler {
 public:
  Warnings() : guard_(this) {}
#if TORCH_VERSION_MAJOR >= 2
  void process(const c10::Warning& w) override { text += w.msg() + "\n"; }
#else
  void process(const c10::SourceLocation&, const std::string& msg, const bool) override { text += msg + "\n"; }
#endif
  std::string text;

 private:
#if TORCH_VERSION_MAJOR >= 2
  c10::WarningUtils::WarningHandlerGuard guard_;
#else
  c10::Warning::WarningHandlerGuard guard_;
#endif
};

TEST(CudaFastMath, Tf32IsSetBothWaysSoAnFp32TrialAfterABf16OneRunsFloat32) {
  // LibTorch's default lets cuDNN convolutions use TF32 (torch.backends.cudnn.allow_tf32 = True): fp32 must say no.
  model::enable_cuda_fast_math(false, false);
  EXPECT_FALSE(tf32_matmul());
  EXPECT_FALSE(tf32_conv()) << "fp32 convolutions on TF32 by LibTorch's default (gpu-review W6)";
  model::enable_cuda_fast_math(true, true);
  EXPECT_TRUE(tf32_matmul() && tf32_conv());
  EXPECT_TRUE(at::globalContext().benchmarkCuDNN());
  model::enable_cuda_fast_math(false, false);
  EXPECT_FALSE(tf32_matmul() || tf32_conv()) << "a later fp32 trial in the same worker process";
  EXPECT_FALSE(at::globalContext().benchmarkCuDNN());
}

TEST(CudaFastMath, SetsTf32WithoutLibTorchsDeprecationWarning) {
  Warnings w;
  model::enable_cuda_fast_math(true, true);
  model::enable_cuda_fast_math(false, false);
  EXPECT_EQ(w.text, "") << "LibTorch " << TORCH_VERSION << " (gpu-review N2)";
}

}  // namespace
}  // namespace xfer
