// train/step: the training criterion and one step's forward and backward over micro-batches — the LibTorch half of
// the step (the update, the exchange and the policies are elsewhere). Torch types: used by the LibTorch engine.
#pragma once

#include <functional>
#include <memory>

#include <torch/torch.h>

#include "xfer/data/loader.hpp"
#include "xfer/model/classifier.hpp"

namespace xfer::train {

struct Criterion {
  bool multilabel = false;     // binary cross-entropy per class, averaged over the classes
  int classes = 0;
  double label_smoothing = 0;  // single-label cross-entropy
  torch::Device device{torch::kCPU};
};

// The batch's labels (int64, n) or 0/1 targets (float32, n × classes) on the criterion's device. On CUDA they are
// staged in pinned memory and copied without blocking (a pageable copy would synchronise the host with the GPU).
torch::Tensor batch_targets(const Criterion& c, const data::Batch& b);

// The criterion summed over the samples whose logits and targets (rows of batch_targets) are given.
torch::Tensor criterion_sum(const Criterion& c, const torch::Tensor& logits, const torch::Tensor& targets);

// A loss on the device, its copy to host memory enqueued right behind the forward pass that produced it: value()
// waits for that copy alone (on CUDA, an event after it), not for the backward pass queued behind it, so the GPU
// stays busy while the host reads it.
class LossReading {
 public:
  LossReading() = default;
  explicit LossReading(const torch::Tensor& loss);
  double value() const;

 private:
  torch::Tensor host_;
  std::shared_ptr<void> copied_;  // CUDA: the event after the copy
};

struct StepSettings {
  Criterion criterion;
  int micro_batches = 1;           // requested; oom_policy's effective_micro_batches decides the split
  double loss_scale = 1.0;         // the loss is multiplied by it before backward (fp16)
  bool autocast = false;           // CUDA autocast around each forward pass and its loss (cast cache cleared after)
  at::ScalarType autocast_dtype = at::kBFloat16;
  // Called before each backward; true for the last micro-batch's, after which the gradients are final (the gradient
  // exchange's hooks may then start summing buckets during that backward).
  std::function<void(bool completes_step)> before_backward;
};

// CUDA autocast on for a scope (nothing when `on` is false): the destructor turns it off and clears the cast cache,
// so an exception in the forward pass (an out-of-memory the OOM policy catches) cannot leave the thread's autocast
// state on for the retry, the next trial on this worker, or its evaluation (autocast is thread-local state).
class AutocastScope {
 public:
  AutocastScope(bool on, at::ScalarType dtype);
  ~AutocastScope();
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  bool on_;
  at::ScalarType dtype_;
};

// Whether an exception of a step is an out-of-memory the OOM policy retries: CUDA's caching allocator throws
// c10::OutOfMemoryError (other allocators and older LibTorch say "out of memory" in a plain c10::Error), but inside
// a TorchScript backbone's forward pass — where most activations are allocated — the interpreter rethrows it as a
// std::runtime_error, "The following operation failed in the TorchScript interpreter. ... out of memory"
// (torch/csrc/jit/runtime/interpreter.cpp, handleError).
bool is_out_of_memory(const std::exception& e);

// Forward and backward of the batch `x` (this rank's shard of `b`) in micro-batches, gradients accumulated. Each
// part's loss is its criterion sum divided by the global batch, so summing gradients over the group gives the full
// batch's mean gradient. Returns the shard's unscaled loss, read without a host synchronisation in the step.
LossReading forward_backward(model::Classifier& model, const data::Batch& b, const torch::Tensor& x, const StepSettings& s);

}  // namespace xfer::train
