#include "step.hpp"

#include "xfer/train/oom_policy.hpp"

#if defined(XFER_TORCH_CUDA)
#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace xfer::train {

torch::Tensor batch_targets(const Criterion& c, const data::Batch& b) {
  const bool pinned = c.device.is_cuda();
  const auto host = torch::TensorOptions().pinned_memory(pinned);
  torch::Tensor t;
  if (c.multilabel) {
    t = torch::empty({b.n, c.classes}, host.dtype(torch::kFloat));
    std::copy(b.targets.begin(), b.targets.begin() + b.n * c.classes, t.data_ptr<float>());
  } else {
    t = torch::empty({b.n}, host.dtype(torch::kLong));
    std::copy(b.labels.begin(), b.labels.begin() + b.n, t.data_ptr<int64_t>());
  }
  // The pinned block is freed when the copy is done: the host allocator records an event for it.
  return t.to(c.device, /*non_blocking=*/pinned);
}

torch::Tensor criterion_sum(const Criterion& c, const torch::Tensor& logits, const torch::Tensor& targets) {
  if (c.multilabel)
    return torch::nn::functional::binary_cross_entropy_with_logits(
               logits.to(torch::kFloat), targets,
               torch::nn::functional::BinaryCrossEntropyWithLogitsFuncOptions().reduction(torch::kSum)) /
           static_cast<double>(c.classes);
  return torch::nn::functional::cross_entropy(
      logits.to(torch::kFloat), targets,
      torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum).label_smoothing(c.label_smoothing));
}

LossReading::LossReading(const torch::Tensor& loss) {
  const auto l = loss.detach().to(torch::kDouble);  // already double from forward_backward: no copy
#if defined(XFER_TORCH_CUDA)
  if (l.is_cuda()) {
    host_ = torch::empty({}, torch::TensorOptions().dtype(torch::kDouble).pinned_memory(true));
    host_.copy_(l, /*non_blocking=*/true);
    auto event = std::make_shared<at::cuda::CUDAEvent>();
    event->record(c10::cuda::getCurrentCUDAStream(l.device().index()));
    copied_ = event;
    return;
  }
#endif
  host_ = l;
}

double LossReading::value() const {
  if (!host_.defined()) return 0;
#if defined(XFER_TORCH_CUDA)
  if (copied_) static_cast<at::cuda::CUDAEvent*>(copied_.get())->synchronize();  // sync-ok: the loss's copy alone
#endif
  return host_.item<double>();  // sync-ok: a host tensor
}

bool is_out_of_memory(const std::exception& e) {
  if (dynamic_cast<const c10::OutOfMemoryError*>(&e)) return true;
  const std::string what = e.what();
  const bool says = what.find("out of memory") != std::string::npos;
  if (dynamic_cast<const c10::Error*>(&e)) return says;
  return says && what.rfind("The following operation failed in the TorchScript interpreter", 0) == 0;
}

AutocastScope::AutocastScope(bool on, at::ScalarType dtype) : on_(on), dtype_(dtype) {
  if (on_) model::set_autocast(true, dtype_);
}

AutocastScope::~AutocastScope() {
  if (on_) model::set_autocast(false, dtype_);
}

LossReading forward_backward(model::Classifier& model, const data::Batch& b, const torch::Tensor& x, const StepSettings& s) {
  const int64_t n = b.n;
  if (n == 0) return LossReading(torch::zeros({}, torch::TensorOptions().dtype(torch::kDouble)));
  const auto targets = batch_targets(s.criterion, b);
  torch::Tensor total;
  const int m = effective_micro_batches(s.micro_batches, n);
  for (int k = 0; k < m && n > 0; ++k) {
    const int64_t lo = n * k / m, hi = n * (k + 1) / m;
    if (hi <= lo) continue;
    // Autocast covers the forward pass and the loss (the criterion runs in float32 either way: it casts the logits,
    // as autocast's fp32 list does); turning it off clears the cast cache, so weights are cast again next step.
    torch::Tensor loss;
    {
      AutocastScope autocast(s.autocast, s.autocast_dtype);
      auto logits = model.forward(x.slice(0, lo, hi));
      loss = criterion_sum(s.criterion, logits, targets.slice(0, lo, hi)) / static_cast<double>(b.global_n);
    }
    const auto part = loss.detach().to(torch::kDouble);  // summed in double, as the host summed the parts before
    total = total.defined() ? total + part : part;
    const bool last = k == m - 1;
    LossReading reading;
    if (last) reading = LossReading(total);  // enqueued before the last backward
    if (s.before_backward) s.before_backward(last);
    (s.loss_scale != 1.0 ? loss * s.loss_scale : loss).backward();
    if (last) return reading;
  }
  return LossReading(total);
}

}  // namespace xfer::train
