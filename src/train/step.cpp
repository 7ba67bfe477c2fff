#include "step.hpp"

#include "xfer/train/oom_policy.hpp"

namespace xfer::train {

torch::Tensor criterion_sum(const Criterion& c, const torch::Tensor& logits, const data::Batch& b, int64_t lo, int64_t hi) {
  const int64_t n = hi - lo;
  if (c.multilabel) {
    auto y = torch::from_blob(const_cast<float*>(b.targets.data()) + lo * c.classes, {n, c.classes}, torch::kFloat)
                 .to(c.device);
    return torch::nn::functional::binary_cross_entropy_with_logits(
               logits.to(torch::kFloat), y,
               torch::nn::functional::BinaryCrossEntropyWithLogitsFuncOptions().reduction(torch::kSum)) /
           static_cast<double>(c.classes);
  }
  auto y = torch::from_blob(const_cast<int32_t*>(b.labels.data()) + lo, {n}, torch::kInt).to(torch::kLong).to(c.device);
  return torch::nn::functional::cross_entropy(
      logits.to(torch::kFloat), y,
      torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum).label_smoothing(c.label_smoothing));
}

AutocastScope::AutocastScope(bool on, at::ScalarType dtype) : on_(on), dtype_(dtype) {
  if (on_) model::set_autocast(true, dtype_);
}

AutocastScope::~AutocastScope() {
  if (on_) model::set_autocast(false, dtype_);
}

double forward_backward(model::Classifier& model, const data::Batch& b, const torch::Tensor& x, const StepSettings& s) {
  double loss_value = 0;
  const int64_t n = b.n;
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
      loss = criterion_sum(s.criterion, logits, b, lo, hi) / static_cast<double>(b.global_n);
    }
    loss_value += loss.item<double>();
    if (s.before_backward) s.before_backward(k == m - 1);
    (s.loss_scale != 1.0 ? loss * s.loss_scale : loss).backward();
  }
  return loss_value;
}

}  // namespace xfer::train
