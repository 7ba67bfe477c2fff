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
#include <functional>
#include <memory>
#include <optional>
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
  // After the last backward: every gradient is its sum over the group (an undefined gradient counts as zeros). A
  // parameter no rank has given a gradient yet keeps none, so the optimizer skips it as it does on one rank (no
  // weight decay, no moments for a branch the backbone never uses).
  virtual void finish() = 0;
  // Every rank calls it at the same point when the group agreed to give up a step it began (an out-of-memory with
  // no retry left, a failure on any rank): the open attempt's sums are completed, matched across the group (the
  // destructor waits for them before it frees the buckets). Without it, destroying an exchange with an attempt open
  // aborts its sums instead (an exit the group did not agree on).
  virtual void abandon() {}
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
  // The host waits until no started sum reads or writes its bucket any more (CUDA: the side stream drained), so the
  // buckets may be freed. Called after wait_all, before the exchange is destroyed.
  virtual void synchronize() {}
  // An exit the group did not agree on: started sums may never be matched by the peers. Tears the sums down without
  // waiting for them (NCCL: ncclCommAbort); over MPI nothing can be cancelled.
  virtual void abort() {}
  virtual std::string name() const = 0;
};

// Over train::Group (MPI_Iallreduce): device buckets are staged through host memory unless the group accepts device
// pointers.
std::unique_ptr<BucketReducer> group_reducer(Group& group, const torch::Device& device);

// The stream and event operations of a reducer that sums on a side stream (NCCL), behind an interface so their
// ordering can be checked without a GPU: the test suite's fake records them as a happens-before graph. Events are
// reusable slots (re-recorded every step, never created per bucket).
class StreamOps {
 public:
  enum class Stream { compute, side };  // compute: the calling thread's current stream (backward's, the optimizer's)
  virtual ~StreamOps() = default;
  virtual void record(size_t event, Stream s) = 0;  // the event marks the work enqueued on `s` so far
  virtual void wait(Stream s, size_t event) = 0;    // later work on `s` waits for the event; the host does not
  virtual void allreduce(torch::Tensor& flat) = 0;  // the in-place sum, enqueued on the side stream
  virtual void synchronize(Stream s) = 0;           // the host waits for the stream's work
  virtual bool query(size_t event) = 0;             // the event's work is done (never blocks)
  virtual std::string async_error() { return ""; }  // an error the sums reported asynchronously ("" when none)
  virtual void abort() {}                           // tear the sums down without waiting for them
  virtual std::string name() const = 0;
};

// What the reducer over StreamOps does when started sums stop making progress.
struct HangPolicy {
  // Started sums not done this long after wait_all ordered them before the compute stream (or an asynchronous
  // error reported): the watchdog aborts the sums (StreamOps::abort) and calls on_hang. 0: no watchdog.
  double timeout_seconds = 0;
  // Default: log and end the process — a rank whose peer died or diverged from the protocol cannot leave NCCL by
  // itself, and its MPI job must go down with it (as MPI_Abort would), so the sweep resumes from checkpoints.
  std::function<void(const std::string& why)> on_hang;
};

// Sums on a side stream: bucket k's sum waits for an event recorded on the compute stream when the bucket's last
// gradient was accumulated; wait_all makes the compute stream wait for the side stream (no host block);
// synchronize() drains the side stream. A watchdog thread polls for asynchronous errors and stalled sums.
std::unique_ptr<BucketReducer> streamed_reducer(std::unique_ptr<StreamOps> ops, HangPolicy policy = {});

// NCCL, for CUDA trials: a communicator per trial group, bootstrapped over the group (rank 0 makes the unique id and
// broadcasts it over MPI; NCCL's own bootstrap then opens TCP sockets on ephemeral ports — NCCL_SOCKET_IFNAME picks
// the interface), sums on a high-priority side stream (streamed_reducer). Throws when xfer was built without NCCL or
// the device is not CUDA.
std::unique_ptr<BucketReducer> nccl_reducer(Group& group, const torch::Device& device, HangPolicy policy = {});
bool built_with_nccl();

// Two members of one trial group on the same GPU make NCCL fail at init ("Duplicate GPU detected") or hang. Each
// member's "host/GPU UUID", in group rank order: a message naming the two ranks, the host and the GPU when two are
// equal; nullopt when every member has a GPU of its own.
std::optional<std::string> duplicate_device(const std::vector<std::string>& members);

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
  // The parameters that require a gradient, all float32 on one device (throws otherwise). `group`: the ranks that
  // agree which parameters any of them has used (nullptr: this rank alone).
  BucketedGradientExchange(std::vector<torch::Tensor> parameters, std::unique_ptr<BucketReducer> reducer,
                           BucketOptions options = {}, Group* group = nullptr);
  ~BucketedGradientExchange() override;
  BucketedGradientExchange(const BucketedGradientExchange&) = delete;
  BucketedGradientExchange& operator=(const BucketedGradientExchange&) = delete;

  void zero_gradients() override;
  void before_backward(bool completes_step) override;
  void finish() override;
  void abandon() override;
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
  void start(Bucket& b);       // the bucket's gradients made its views again, then its sum started
  void attach_views();

  std::vector<torch::Tensor> params_;
  std::unique_ptr<BucketReducer> reducer_;
  BucketOptions options_;
  std::vector<Bucket> buckets_;
  std::vector<size_t> bucket_of_;      // parameter → bucket
  std::vector<bool> seen_;             // parameter's hook fired in this step's last backward
  std::vector<float> used_;            // parameter's hook fired in any backward of this attempt (1) or not (0)
  std::vector<bool> ever_used_;        // by any rank, in any step so far
  Group* group_ = nullptr;
  size_t next_bucket_ = 0;
  bool armed_ = false;
  bool attempt_open_ = false;          // zero_gradients() began a step that finish() has not ended
  int64_t started_in_backward_ = 0;
  // Kept alive: a tensor holds its accumulator (a std::shared_ptr<Node>) weakly, through its AutogradMeta.
  using Accumulator = decltype(torch::autograd::impl::grad_accumulator(std::declval<const torch::autograd::Variable&>()));
  std::vector<Accumulator> accumulators_;
  std::vector<uintptr_t> hooks_;
};

}  // namespace xfer::train
