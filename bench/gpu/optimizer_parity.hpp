// The fused optimizer steps (src/train/fused_optimizer) against torch::optim's own AdamW and SGD, step for step, on
// any device whose LibTorch has the fused kernels (2.x: CPU and CUDA). Shared by the torch2 unit test
// (tests/unit/fused_optimizer_test.cpp) and bench/gpu/gpu_smoke (the same comparison on the GPU). LibTorch only.
#pragma once

#include <algorithm>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "fused_optimizer.hpp"

namespace xfer::gpu_check {

struct OptimizerCase {
  std::string name;
  bool adamw = false;
  double momentum = 0;  // SGD
  bool nesterov = false;
};

// The cases gpu-review C1 asks for: SGD with momentum 0 (the spec allows it), 0.9, 0.9 with Nesterov; AdamW.
inline std::vector<OptimizerCase> optimizer_cases() {
  return {{"sgd momentum 0", false, 0.0, false},
          {"sgd momentum 0.9", false, 0.9, false},
          {"sgd momentum 0.9 nesterov", false, 0.9, true},
          {"adamw", true, 0.0, false}};
}

struct OptimizerParity {
  double max_parameter_difference = 0;  // |fused - torch::optim| over every element, after every step
  double max_state_difference = 0;      // momentum buffers / first and second moments, after the last step
  size_t fused_states = 0;              // parameters with optimizer state, each side
  size_t reference_states = 0;
};

// `steps` updates of two parameters (one channels-last 4-d, one vector) from the same deterministic gradients, with
// weight decay, one side by torch::optim, the other by the fused step holding its state in its own torch::optim
// object (as the engine does). Throws what the kernels throw.
inline OptimizerParity compare_fused_optimizer(const OptimizerCase& c, const torch::Device& device, int steps = 3) {
  torch::manual_seed(7);
  const auto f32 = torch::TensorOptions().dtype(torch::kFloat).device(device);
  std::vector<torch::Tensor> init = {torch::randn({4, 3, 3, 3}, f32).contiguous(torch::MemoryFormat::ChannelsLast),
                                     torch::randn({5}, f32)};
  auto clone = [&] {
    std::vector<torch::Tensor> ps;
    for (const auto& t : init) ps.push_back(t.clone(torch::MemoryFormat::Preserve).set_requires_grad(true));
    return ps;
  };
  auto ref = clone(), fused = clone();
  const double lr = 0.05, wd = 0.01;
  std::unique_ptr<torch::optim::Optimizer> ref_opt, fused_opt;
  if (c.adamw) {
    auto o = torch::optim::AdamWOptions(lr).betas({0.9, 0.999}).eps(1e-8).weight_decay(wd);
    ref_opt = std::make_unique<torch::optim::AdamW>(ref, o);
    fused_opt = std::make_unique<torch::optim::AdamW>(fused, o);
  } else {
    auto o = torch::optim::SGDOptions(lr).momentum(c.momentum).nesterov(c.nesterov).weight_decay(wd);
    ref_opt = std::make_unique<torch::optim::SGD>(ref, o);
    fused_opt = std::make_unique<torch::optim::SGD>(fused, o);
  }
  train::FusedAdamWState adamw_state;
  auto max_diff = [](const torch::Tensor& a, const torch::Tensor& b) {
    return (a - b).abs().max().item<double>();
  };
  OptimizerParity r;
  for (int s = 0; s < steps; ++s) {
    for (size_t i = 0; i < init.size(); ++i) {
      const auto g = torch::randn(init[i].sizes(), f32).contiguous(init[i].suggest_memory_format());
      ref[i].mutable_grad() = g.clone(torch::MemoryFormat::Preserve);
      fused[i].mutable_grad() = g.clone(torch::MemoryFormat::Preserve);
    }
    ref_opt->step();
    if (c.adamw)
      train::fused_adamw_step(*fused_opt, fused, lr, 0.9, 0.999, wd, 1e-8, adamw_state);
    else
      train::fused_sgd_step(*fused_opt, fused, lr, c.momentum, c.nesterov, wd);
    for (size_t i = 0; i < init.size(); ++i)
      r.max_parameter_difference = std::max(r.max_parameter_difference, max_diff(ref[i], fused[i]));
  }
  r.fused_states = fused_opt->state().size();
  r.reference_states = ref_opt->state().size();
  for (size_t i = 0; i < init.size() && r.fused_states == r.reference_states; ++i) {
    auto& rs = ref_opt->state();
    auto& fs = fused_opt->state();
    const auto a = rs.find(ref[i].unsafeGetTensorImpl()), b = fs.find(fused[i].unsafeGetTensorImpl());
    if (a == rs.end() || b == fs.end()) continue;
    if (c.adamw) {
      const auto& x = static_cast<torch::optim::AdamWParamState&>(*a->second);
      const auto& y = static_cast<torch::optim::AdamWParamState&>(*b->second);
      r.max_state_difference = std::max({r.max_state_difference, max_diff(x.exp_avg(), y.exp_avg()),
                                         max_diff(x.exp_avg_sq(), y.exp_avg_sq()),
                                         static_cast<double>(std::abs(x.step() - y.step()))});
    } else {
      const auto& x = static_cast<torch::optim::SGDParamState&>(*a->second);
      const auto& y = static_cast<torch::optim::SGDParamState&>(*b->second);
      r.max_state_difference = std::max(r.max_state_difference, max_diff(x.momentum_buffer(), y.momentum_buffer()));
    }
  }
  return r;
}

}  // namespace xfer::gpu_check
