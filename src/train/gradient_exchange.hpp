// train/gradient_exchange: summing a step's gradients over the data-parallel group, behind one small interface so
// that an NCCL exchange (device to device, bucketed, overlapped with backward) can sit beside today's one over
// train::Group (MPI, in sweep/). Torch types: included only by the LibTorch engine.
#pragma once

#include <memory>
#include <vector>

#include <torch/torch.h>

#include "xfer/train/group.hpp"

namespace xfer::train {

class GradientExchange {
 public:
  virtual ~GradientExchange() = default;
  // Replaces each parameter's gradient by its sum over the group (an undefined gradient counts as zeros).
  virtual void sum(std::vector<torch::Tensor>& parameters) = 0;
};

// Over train::Group: the gradients flattened into one bucket, staged through host memory unless the group accepts
// device pointers (CUDA-aware MPI). A group of one does nothing.
class GroupGradientExchange final : public GradientExchange {
 public:
  GroupGradientExchange(Group& group, const torch::Device& device) : group_(group), device_(device) {}
  void sum(std::vector<torch::Tensor>& parameters) override;

 private:
  Group& group_;
  torch::Device device_;
};

}  // namespace xfer::train
