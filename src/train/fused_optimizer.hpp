// train/fused_optimizer: torch.optim's fused=True from C++ — one kernel for a whole AdamW or SGD update (ATen's
// _fused_adamw_ / _fused_sgd_, LibTorch ≥ 2.0; CUDA), the state kept in the torch::optim object's own map so that
// checkpoints are the same whichever step ran. LibTorch only: the engine and bench/trainer's compute_bench use it.
#pragma once

#include <vector>

#include <torch/torch.h>

namespace xfer::train {

// Whether this LibTorch has the fused kernels (they run on CUDA tensors).
bool fused_optimizer_available();

struct FusedAdamWState {
  std::vector<torch::Tensor> steps;  // per parameter, on the device, as torch.optim keeps them; rebuilt when empty
};

// AdamW (decoupled weight decay `weight_decay`, as torch::optim::AdamW applies it) over the parameters with a
// gradient. Throws when !fused_optimizer_available().
void fused_adamw_step(torch::optim::Optimizer& adamw, const std::vector<torch::Tensor>& params, double lr, double beta1,
                      double beta2, double weight_decay, double eps, FusedAdamWState& state);
// SGD with momentum (and Nesterov), weight decay added to the gradient, as torch::optim::SGD.
void fused_sgd_step(torch::optim::Optimizer& sgd, const std::vector<torch::Tensor>& params, double lr, double momentum,
                    bool nesterov, double weight_decay);

}  // namespace xfer::train
