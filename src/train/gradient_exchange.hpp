// train/gradient_exchange: summing a step's gradients over the data-parallel group. Two exchanges behind one
// interface:
//  - BucketedGradientExchange, the default: DDP's design (pytorch/torch/csrc/distributed/c10d/reducer.cpp) written
//    for xfer — each parameter's gradient is a view into a flat bucket (1 MB for the first, 25 MB after, parameters
//    in reverse order, so buckets fill in the order backward produces them); a post-accumulate-grad hook per
//    parameter starts a bucket's sum as soon as its last gradient is accumulated, during backward, and finish()
//    waits once before the optimizer's step. The sums run over NCCL on a side stream for CUDA trials (nccl_reducer)
//    or over train::Group (MPI_Iallreduce) otherwise.
//  - GroupGradientExchange: after backward, every gradient flattened into one bucket through train::Group — the
//    reference the bucketed one is tested against, and what `--gradient-exchange flat` runs.
// Torch types: included only by the LibTorch engine.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "xfer/train/group.hpp"

namespace xfer::train {

class GradientExchange {
 public:
  virtual ~GradientExchange() = default;
  // Before the step's first backward: every gradient to zero. The bucketed exchange zeroes its flat buffers and keeps
  // the gradients as views into them (zero_grad(set_to_none) would drop the views).
  virtual void zero_gradients() = 0;
  // Before each backward of the step; `completes_step` for the one after which the gradients are final (the last
  // micro-batch): only then may hooks start sums.
  virtual void before_backward(bool /*completes_step*/) {}
  // After the last backward: every gradient is its sum over the group (an undefined gradient counts as zeros).
  virtual void finish() = 0;
  // The tensors holding the gradients, for unscaling: the flat buckets, or each parameter's gradient.
  virtual std::vector<torch::Tensor> gradient_storage() = 0;
  virtual std::string describe() const = 0;  // for the trial's log: "bucketed (3 buckets, overlapped, MPI)"
};

// Over train::Group: the gradients flattened into one bucket, staged through host memory unless the group accepts
// device pointers (CUDA-aware MPI). A group of one does nothing.
class GroupGradientExchange final : public GradientExchange {
 public:
  GroupGradientExchange(std::vector<torch::Tensor> parameters, Group& group, const torch::Device& device)
      : params_(std::move(parameters)), group_(group), device_(device) {}
  void zero_gradients() override;
  void finish() override;
  std::vector<torch::Tensor> gradient_storage() override;
  std::string describe() const override { return "flat (one bucket after backward)"; }

 private:
  std::vector<torch::Tensor> params_;
  Group& group_;
  torch::Device device_;
};

// Where a bucket's sum is computed. start() is called from the autograd engine's thread (on CUDA, with the stream
// backward runs on as the current stream), in bucket order, identically on every rank.
class BucketReducer {
 public:
  virtual ~BucketReducer() = default;
  virtual void start(torch::Tensor& flat) = 0;  // begin the in-place sum of a float32 bucket
  virtual void progress() {}                    // let started sums advance
  virtual void wait_all() = 0;                  // every started sum done (CUDA: ordered before the current stream)
  virtual std::string name() const = 0;
};

// Over train::Group (MPI_Iallreduce): device buckets are staged through host memory unless the group accepts device
// pointers.
std::unique_ptr<BucketReducer> group_reducer(Group& group, const torch::Device& device);
// NCCL, for CUDA trials: a communicator per trial group, bootstrapped over the group (rank 0 makes the unique id and
// broadcasts it; no TCP store, no port, so concurrent trials cannot collide), sums on a high-priority side stream
// that waits for backward's stream with an event. Throws when xfer was built without NCCL or the device is not CUDA.
std::unique_ptr<BucketReducer> nccl_reducer(Group& group, const torch::Device& device);
bool built_with_nccl();

struct BucketOptions {
  int64_t first_bytes = int64_t(1) << 20;  // DDP's kDefaultFirstBucketBytes
  int64_t cap_bytes = int64_t(25) << 20;   // DDP's kDefaultBucketBytesCap
  bool overlap = true;                     // start sums from the hooks during backward; false: all in finish()
};

// DDP's assignment: parameters in reverse order, a bucket closed once it holds at least first_bytes (the first) or
// cap_bytes (the others). Returns parameter indices per bucket.
std::vector<std::vector<size_t>> assign_buckets(const std::vector<int64_t>& bytes, int64_t first_bytes,
                                                int64_t cap_bytes);

class BucketedGradientExchange final : public GradientExchange {
 public:
  // The parameters that require a gradient, all float32 on one device (throws otherwise).
  BucketedGradientExchange(std::vector<torch::Tensor> parameters, std::unique_ptr<BucketReducer> reducer,
                           BucketOptions options = {});
  ~BucketedGradientExchange() override;
  BucketedGradientExchange(const BucketedGradientExchange&) = delete;
  BucketedGradientExchange& operator=(const BucketedGradientExchange&) = delete;

  void zero_gradients() override;
  void before_backward(bool completes_step) override;
  void finish() override;
  std::vector<torch::Tensor> gradient_storage() override;
  std::string describe() const override;

  size_t buckets() const { return buckets_.size(); }
  int64_t sums_started_during_backward() const { return started_in_backward_; }  // of the last step

 private:
  struct Bucket {
    torch::Tensor flat;
    std::vector<size_t> params;
    std::vector<torch::Tensor> views;  // the parameters' gradients
    size_t pending = 0;
    bool started = false;
  };
  void ready(size_t param);   // a hook: the parameter's gradient is accumulated
  void start_ready_buckets();  // in bucket order, as far as buckets are complete
  void attach_views();

  std::vector<torch::Tensor> params_;
  std::unique_ptr<BucketReducer> reducer_;
  BucketOptions options_;
  std::vector<Bucket> buckets_;
  std::vector<size_t> bucket_of_;      // parameter → bucket
  std::vector<bool> seen_;             // parameter's hook fired in this step's last backward
  size_t next_bucket_ = 0;
  bool armed_ = false;
  bool attempt_open_ = false;          // zero_gradients() began a step that finish() has not ended
  int64_t started_in_backward_ = 0;
  // Kept alive: a tensor holds its accumulator weakly (shared_ptr in LibTorch 1.x, intrusive_ptr in 2.x).
  using Accumulator = decltype(torch::autograd::impl::grad_accumulator(std::declval<const torch::autograd::Variable&>()));
  std::vector<Accumulator> accumulators_;
  std::vector<uintptr_t> hooks_;
};

}  // namespace xfer::train
