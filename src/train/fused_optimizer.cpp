#include "fused_optimizer.hpp"

#include <memory>
#include <stdexcept>

#include <torch/version.h>

namespace xfer::train {

#if TORCH_VERSION_MAJOR >= 2
bool fused_optimizer_available() { return true; }

void fused_adamw_step(torch::optim::Optimizer& opt, const std::vector<torch::Tensor>& params, double lr, double beta1,
                      double beta2, double weight_decay, double eps, FusedAdamWState& fused) {
  std::vector<torch::Tensor> ps, gs, first, second;
  auto& state = opt.state();
  for (const auto& p : params) {
    if (!p.grad().defined()) continue;
    void* key = p.unsafeGetTensorImpl();
    auto it = state.find(key);
    if (it == state.end()) {
      auto s = std::make_unique<torch::optim::AdamWParamState>();
      s->step(0);
      s->exp_avg(torch::zeros_like(p, torch::MemoryFormat::Preserve));
      s->exp_avg_sq(torch::zeros_like(p, torch::MemoryFormat::Preserve));
      it = state.emplace(key, std::move(s)).first;
      fused.steps.clear();
    }
    auto& s = static_cast<torch::optim::AdamWParamState&>(*it->second);
    ps.push_back(p);
    gs.push_back(p.grad());
    first.push_back(s.exp_avg());
    second.push_back(s.exp_avg_sq());
  }
  if (ps.empty()) return;
  if (fused.steps.size() != ps.size()) {
    fused.steps.clear();
    for (const auto& p : ps) {
      const auto& s = static_cast<torch::optim::AdamWParamState&>(*state.at(p.unsafeGetTensorImpl()));
      fused.steps.push_back(
          torch::full({}, static_cast<double>(s.step()), torch::TensorOptions().dtype(torch::kFloat).device(p.device())));
    }
  }
  // torch.optim increments the step counts before the kernel, which reads them for the bias corrections.
  at::_foreach_add_(fused.steps, 1);
  at::_fused_adamw_(ps, gs, first, second, {}, fused.steps, lr, beta1, beta2, weight_decay, eps, /*amsgrad=*/false,
                    /*maximize=*/false);
  for (const auto& p : ps) {
    auto& s = static_cast<torch::optim::AdamWParamState&>(*state.at(p.unsafeGetTensorImpl()));
    s.step(s.step() + 1);  // the host count, for checkpoints
  }
}

void fused_sgd_step(torch::optim::Optimizer& opt, const std::vector<torch::Tensor>& params, double lr, double momentum,
                    bool nesterov, double weight_decay) {
  std::vector<torch::Tensor> ps, gs, buffers;
  auto& state = opt.state();
  bool first_step = false;
  for (const auto& p : params) {
    if (!p.grad().defined()) continue;
    ps.push_back(p);
    gs.push_back(p.grad());
    // Without momentum, torch.optim's SGD keeps no buffer, and the kernel refuses one (FusedSGD.cpp, FusedSgdKernel.cu:
    // momentum 0 requires an empty buffer list).
    if (momentum == 0) continue;
    void* key = p.unsafeGetTensorImpl();
    auto it = state.find(key);
    if (it == state.end()) {
      auto s = std::make_unique<torch::optim::SGDParamState>();
      s->momentum_buffer(torch::zeros_like(p, torch::MemoryFormat::Preserve));
      it = state.emplace(key, std::move(s)).first;
      first_step = true;  // the kernel then starts the buffer from the gradient, as torch.optim.SGD
    }
    buffers.push_back(static_cast<torch::optim::SGDParamState&>(*it->second).momentum_buffer());
  }
  if (ps.empty()) return;
  at::_fused_sgd_(ps, gs, buffers, weight_decay, momentum, lr, /*dampening=*/0.0, nesterov, /*maximize=*/false,
                  first_step);
}
#else
bool fused_optimizer_available() { return false; }
void fused_adamw_step(torch::optim::Optimizer&, const std::vector<torch::Tensor>&, double, double, double, double,
                      double, FusedAdamWState&) {
  throw std::logic_error("fused AdamW needs LibTorch 2.0 or later");
}
void fused_sgd_step(torch::optim::Optimizer&, const std::vector<torch::Tensor>&, double, double, bool, double) {
  throw std::logic_error("fused SGD needs LibTorch 2.0 or later");
}
#endif

}  // namespace xfer::train
