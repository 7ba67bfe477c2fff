#include "gradient_exchange.hpp"

namespace xfer::train {

void GroupGradientExchange::sum(std::vector<torch::Tensor>& parameters) {
  if (group_.size() == 1) return;
  std::vector<torch::Tensor> grads;
  for (auto& p : parameters) {
    if (!p.grad().defined()) p.mutable_grad() = torch::zeros_like(p);
    grads.push_back(p.grad().reshape({-1}));
  }
  auto flat = torch::cat(grads);
  const bool direct = !device_.is_cuda() || group_.accepts_device_pointers();
  auto buffer = direct ? flat.contiguous() : flat.to(torch::kCPU).contiguous();
  group_.allreduce_sum(buffer.data_ptr<float>(), static_cast<size_t>(buffer.numel()));
  if (!direct) buffer = buffer.to(device_);
  int64_t at = 0;
  torch::NoGradGuard ng;
  for (auto& p : parameters) {
    const int64_t k = p.numel();
    p.mutable_grad().copy_(buffer.slice(0, at, at + k).view_as(p));
    at += k;
  }
}

}  // namespace xfer::train
