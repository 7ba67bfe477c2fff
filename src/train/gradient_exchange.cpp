#include "gradient_exchange.hpp"

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <optional>
#include <sstream>
#include <thread>

#include <torch/csrc/autograd/utils/lambda_post_hook.h>

#include "xfer/core/error.hpp"

#if defined(XFER_TORCH_CUDA)
#include <c10/cuda/CUDAStream.h>
#endif
#if defined(XFER_HAVE_NCCL)
#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDAGuard.h>
#include <nccl.h>
#endif

namespace xfer::train {

namespace {

// MPI has no stream semantics: it reads device memory (CUDA-aware MPI) when called, unordered with the kernels
// enqueued to write it (torch::cat, AccumulateGrad). The host waits for the current stream first.
void settle_for_mpi([[maybe_unused]] const torch::Tensor& t) {
#if defined(XFER_TORCH_CUDA)
  if (t.is_cuda()) c10::cuda::getCurrentCUDAStream(t.device().index()).synchronize();
#endif
}

}  // namespace

// ---- the flat exchange ---------------------------------------------------------------------------------------------

void GroupGradientExchange::zero_gradients() {
  // As LibTorch 1.x's Optimizer::zero_grad: detached and zeroed in place, the storage kept — in one launch over
  // every gradient (_foreach_zero_), not a kernel per parameter.
  std::vector<torch::Tensor> grads;
  for (auto& p : params_)
    if (p.grad().defined()) {
      p.mutable_grad().detach_();
      grads.push_back(p.grad());
    }
  if (!grads.empty()) at::_foreach_zero_(grads);
}

void GroupGradientExchange::finish() {
  if (group_.size() == 1) return;
  std::vector<torch::Tensor> grads;
  // After the gradients, one flag per parameter: 1 where this rank has a gradient. Summed with them, it says which
  // parameters have one anywhere.
  std::vector<float> defined(params_.size(), 0.0f);
  for (size_t i = 0; i < params_.size(); ++i) {
    const auto& p = params_[i];
    grads.push_back(p.grad().defined() ? p.grad().reshape({-1}) : torch::zeros({p.numel()}, p.options()));
    defined[i] = p.grad().defined() ? 1.0f : 0.0f;
  }
  grads.push_back(torch::from_blob(defined.data(), {static_cast<int64_t>(defined.size())}, torch::kFloat).to(device_));
  auto flat = torch::cat(grads);
  const bool direct = !device_.is_cuda() || group_.accepts_device_pointers();
  auto buffer = direct ? flat.contiguous() : flat.to(torch::kCPU).contiguous();
  if (direct) settle_for_mpi(buffer);
  group_.allreduce_sum(buffer.data_ptr<float>(), static_cast<size_t>(buffer.numel()));
  const auto anywhere = buffer.slice(0, buffer.numel() - static_cast<int64_t>(params_.size())).to(torch::kCPU).contiguous();
  const float* has = anywhere.data_ptr<float>();
  if (!direct) buffer = buffer.to(device_);
  int64_t at = 0;
  torch::NoGradGuard ng;
  for (size_t i = 0; i < params_.size(); ++i) {
    auto& p = params_[i];
    const int64_t k = p.numel();
    if (has[i] > 0) {
      if (!p.grad().defined()) p.mutable_grad() = torch::empty_like(p);
      p.mutable_grad().copy_(buffer.slice(0, at, at + k).view_as(p));
    }
    at += k;
  }
}

std::vector<torch::Tensor> GroupGradientExchange::gradient_storage() {
  std::vector<torch::Tensor> out;
  for (auto& p : params_)
    if (p.grad().defined()) out.push_back(p.grad());
  return out;
}

// ---- reducers -------------------------------------------------------------------------------------------------------

namespace {

class GroupReducer final : public BucketReducer {
 public:
  GroupReducer(Group& group, const torch::Device& device)
      : group_(group), stage_(device.is_cuda() && !group.accepts_device_pointers()) {}

  void start(torch::Tensor& flat) override {
    if (!stage_) {
      settle_for_mpi(flat);  // CUDA-aware MPI reads the bucket now: its last gradient must be written
      group_.start_allreduce_sum(flat.data_ptr<float>(), static_cast<size_t>(flat.numel()));
      return;
    }
    // Staged through host memory: a blocking copy here, inside the autograd hook, would stall backward once per
    // bucket. The buckets are copied and summed in wait_all, after backward (no overlap, no stall).
    staged_.emplace_back(flat, torch::Tensor());
  }

  void progress() override { group_.progress(); }

  void wait_all() override {
    for (auto& [device, host] : staged_) {
      host = device.to(torch::kCPU).contiguous();
      group_.start_allreduce_sum(host.data_ptr<float>(), static_cast<size_t>(host.numel()));
    }
    group_.wait_all();
    torch::NoGradGuard ng;
    for (auto& [device, host] : staged_) device.copy_(host);
    staged_.clear();
  }

  std::string name() const override { return stage_ ? "MPI through host memory" : "MPI"; }

 private:
  Group& group_;
  bool stage_;
  std::vector<std::pair<torch::Tensor, torch::Tensor>> staged_;
};

// Over StreamOps: the ordering of the side-stream sums, and a watchdog for sums that never finish.
class StreamedReducer final : public BucketReducer {
 public:
  StreamedReducer(std::unique_ptr<StreamOps> ops, HangPolicy policy) : ops_(std::move(ops)), policy_(std::move(policy)) {
    if (!policy_.on_hang)
      policy_.on_hang = [name = ops_->name()](const std::string& why) {
        std::fprintf(stderr, "xfer: %s gradient sums: %s; ending the process so its MPI job does not hang\n",
                     name.c_str(), why.c_str());
        std::abort();
      };
    if (policy_.timeout_seconds > 0) watchdog_ = std::thread([this] { watch(); });
  }
  ~StreamedReducer() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    if (watchdog_.joinable()) watchdog_.join();
  }

  void start(torch::Tensor& flat) override {
    std::lock_guard<std::mutex> lock(mu_);
    check();
    // Event slot 1 + k for the attempt's k-th bucket: the side stream waits for the compute stream's work so far,
    // which ends with the bucket's last accumulation (the hook runs on the stream AccumulateGrad ran on).
    const size_t ready = 1 + started_++;
    ops_->record(ready, StreamOps::Stream::compute);
    ops_->wait(StreamOps::Stream::side, ready);
    ops_->allreduce(flat);
    // Slot 0, `done`: re-recorded after every launch, so it marks the last started sum, for wait_all and the
    // watchdog alike.
    ops_->record(0, StreamOps::Stream::side);
    if (!pending_since_) pending_since_ = Clock::now();
    cv_.notify_all();
  }

  void progress() override {
    std::lock_guard<std::mutex> lock(mu_);
    check();
  }

  void wait_all() override {
    std::lock_guard<std::mutex> lock(mu_);
    check();
    if (started_ == 0) return;
    // The optimizer's stream waits for the sums; the host does not block.
    ops_->wait(StreamOps::Stream::compute, 0);
    started_ = 0;
  }

  void synchronize() override {
    // Without the lock: a stream that never drains (a peer that stopped) must leave the watchdog free to abort.
    ops_->synchronize(StreamOps::Stream::side);
    std::lock_guard<std::mutex> lock(mu_);
    check();
  }

  void abort() override {
    std::lock_guard<std::mutex> lock(mu_);
    ops_->abort();
    aborted_ = true;
  }

  std::string name() const override { return ops_->name(); }

 private:
  using Clock = std::chrono::steady_clock;

  void check() {
    if (aborted_) throw Error(ops_->name() + ": the gradient sums were aborted");
    const std::string e = ops_->async_error();
    if (!e.empty()) throw Error(ops_->name() + ": " + e);
  }

  // Polls, a few times per timeout: an asynchronous error, or a started sum still not done past the timeout (a peer
  // that never launched its matching sums), ends the sums and calls on_hang.
  void watch() {
    const auto poll = std::chrono::duration<double>(std::min(1.0, policy_.timeout_seconds / 4));
    std::unique_lock<std::mutex> lock(mu_);
    while (!stopping_) {
      cv_.wait_for(lock, poll);
      if (stopping_ || aborted_) return;
      std::string why = ops_->async_error();
      if (why.empty() && pending_since_) {
        const double waited = std::chrono::duration<double>(Clock::now() - *pending_since_).count();
        if (ops_->query(0)) pending_since_.reset();
        else if (waited > policy_.timeout_seconds)
          why = "started sums not done after " + std::to_string(waited) + " s (a peer stopped exchanging)";
      }
      if (why.empty()) continue;
      ops_->abort();
      aborted_ = true;
      lock.unlock();
      policy_.on_hang(why);
      return;
    }
  }

  std::unique_ptr<StreamOps> ops_;
  HangPolicy policy_;
  std::mutex mu_;  // the autograd thread, the training thread and the watchdog share ops_
  std::condition_variable cv_;
  size_t started_ = 0;
  std::optional<Clock::time_point> pending_since_;  // the first sum launched since `done` was last seen done
  bool aborted_ = false;
  bool stopping_ = false;
  std::thread watchdog_;
};

#if defined(XFER_HAVE_NCCL)
// Raw NCCL rather than c10d's ProcessGroupNCCL: the sweep already has an MPI communicator to bootstrap from, so no
// TCPStore (ports that concurrent trials could collide on), no dependence on c10d's C++ internals, which change
// between LibTorch releases and compile only with USE_C10D_NCCL defined — NVIDIA's TorchFort does the same
// (../shared/gpu-design.md §1.3). The watchdog and abort c10d has are StreamedReducer's.
void nccl_check(ncclResult_t r, const char* what) {
  if (r != ncclSuccess) throw Error(std::string("NCCL: ") + what + " failed: " + ncclGetErrorString(r));
}

class NcclOps final : public StreamOps {
 public:
  NcclOps(Group& group, const torch::Device& device)
      : device_(device), side_(c10::cuda::getStreamFromPool(/*isHighPriority=*/true, device.index())) {
    c10::cuda::CUDAGuard guard(device_);
    ncclUniqueId id;
    std::string bytes;
    if (group.rank() == 0) {
      nccl_check(ncclGetUniqueId(&id), "ncclGetUniqueId");
      bytes.assign(reinterpret_cast<const char*>(&id), sizeof id);
    }
    group.broadcast(bytes, 0);
    if (bytes.size() != sizeof id) throw Error("NCCL: the group's unique id arrived with the wrong size");
    std::memcpy(&id, bytes.data(), sizeof id);
    nccl_check(ncclCommInitRank(&comm_, group.size(), id, group.rank()), "ncclCommInitRank");
  }
  ~NcclOps() override {
    if (!comm_) return;
    if (aborted_) return;  // ncclCommAbort freed it
    // The exchange synchronised the side stream before (BucketedGradientExchange's destructor), so this returns.
    ncclCommDestroy(comm_);
  }

  void record(size_t event, Stream s) override {
    c10::cuda::CUDAGuard guard(device_);
    if (event >= events_.size()) events_.resize(event + 1);
    if (!events_[event]) events_[event] = std::make_unique<at::cuda::CUDAEvent>();
    events_[event]->record(stream(s));
  }
  void wait(Stream s, size_t event) override {
    c10::cuda::CUDAGuard guard(device_);
    events_.at(event)->block(stream(s));
  }
  void allreduce(torch::Tensor& flat) override {
    c10::cuda::CUDAGuard guard(device_);
    nccl_check(ncclAllReduce(flat.data_ptr(), flat.data_ptr(), static_cast<size_t>(flat.numel()), ncclFloat32, ncclSum,
                             comm_, side_.stream()),
               "ncclAllReduce");
  }
  void synchronize(Stream s) override { stream(s).synchronize(); }
  bool query(size_t event) override { return event >= events_.size() || !events_[event] || events_[event]->query(); }
  std::string async_error() override {
    if (!comm_ || aborted_) return "";
    ncclResult_t state = ncclSuccess;
    if (ncclCommGetAsyncError(comm_, &state) != ncclSuccess) return "ncclCommGetAsyncError failed";
    if (state == ncclSuccess || state == ncclInProgress) return "";
    return std::string("asynchronous error ") + ncclGetErrorString(state);
  }
  void abort() override {
    if (comm_ && !aborted_) ncclCommAbort(comm_);
    aborted_ = true;
  }
  std::string name() const override { return "NCCL"; }

 private:
  c10::cuda::CUDAStream stream(Stream s) const {
    return s == Stream::side ? side_ : c10::cuda::getCurrentCUDAStream(device_.index());
  }

  torch::Device device_;
  c10::cuda::CUDAStream side_;
  ncclComm_t comm_ = nullptr;
  bool aborted_ = false;
  std::vector<std::unique_ptr<at::cuda::CUDAEvent>> events_;  // slot 0: done; 1 + k: bucket k's ready
};
#endif

}  // namespace

std::unique_ptr<BucketReducer> group_reducer(Group& group, const torch::Device& device) {
  return std::make_unique<GroupReducer>(group, device);
}

bool built_with_nccl() {
#if defined(XFER_HAVE_NCCL)
  return true;
#else
  return false;
#endif
}

std::unique_ptr<BucketReducer> streamed_reducer(std::unique_ptr<StreamOps> ops, HangPolicy policy) {
  return std::make_unique<StreamedReducer>(std::move(ops), std::move(policy));
}

std::unique_ptr<BucketReducer> nccl_reducer([[maybe_unused]] Group& group, const torch::Device& device,
                                            [[maybe_unused]] HangPolicy policy) {
  if (!device.is_cuda()) throw Error("NCCL sums gradients of CUDA trials only (device " + device.str() + ")");
#if defined(XFER_HAVE_NCCL)
  return streamed_reducer(std::make_unique<NcclOps>(group, device), std::move(policy));
#else
  throw Error("this xfer was built without NCCL (configure with a CUDA LibTorch and NCCL_ROOT)");
#endif
}

std::optional<std::string> duplicate_device(const std::vector<std::string>& members) {
  for (size_t a = 0; a < members.size(); ++a)
    for (size_t b = a + 1; b < members.size(); ++b)
      if (members[a] == members[b]) {
        const auto cut = members[a].find('/');
        std::ostringstream o;
        o << "ranks " << a << " and " << b << " of the trial's group share GPU " << members[a].substr(cut + 1)
          << " on host " << members[a].substr(0, cut);
        return o.str();
      }
  return std::nullopt;
}

// ---- the bucketed exchange ----------------------------------------------------------------------------------------

std::vector<std::vector<size_t>> assign_buckets(const std::vector<int64_t>& bytes, int64_t first_bytes,
                                                int64_t cap_bytes) {
  std::vector<std::vector<size_t>> out;
  std::vector<size_t> current;
  int64_t filled = 0;
  for (size_t k = bytes.size(); k-- > 0;) {
    current.push_back(k);
    filled += bytes[k];
    if (filled >= (out.empty() ? first_bytes : cap_bytes)) {
      out.push_back(std::move(current));
      current.clear();
      filled = 0;
    }
  }
  if (!current.empty()) out.push_back(std::move(current));
  return out;
}

BucketedGradientExchange::BucketedGradientExchange(std::vector<torch::Tensor> parameters,
                                                   std::unique_ptr<BucketReducer> reducer, BucketOptions options,
                                                   Group* group)
    : reducer_(std::move(reducer)), options_(options), group_(group) {
  for (auto& p : parameters)
    if (p.requires_grad()) params_.push_back(p);
  std::vector<int64_t> bytes;
  for (const auto& p : params_) {
    if (p.scalar_type() != torch::kFloat)
      throw Error(std::string("bucketed gradient exchange: a parameter of type ") + c10::toString(p.scalar_type()) +
                  " (float32 parameters only; --gradient-exchange flat sums any)");
    if (p.device() != params_.front().device()) throw Error("bucketed gradient exchange: parameters on two devices");
    bytes.push_back(p.numel() * static_cast<int64_t>(sizeof(float)));
  }
  const auto plan = assign_buckets(bytes, options_.first_bytes, options_.cap_bytes);
  bucket_of_.resize(params_.size());
  seen_.assign(params_.size(), false);
  used_.assign(params_.size(), 0.0f);
  ever_used_.assign(params_.size(), false);
  for (size_t b = 0; b < plan.size(); ++b) {
    Bucket k;
    k.params = plan[b];
    int64_t n = 0;
    for (size_t i : k.params) n += params_[i].numel();
    k.flat = torch::zeros({n}, torch::TensorOptions().dtype(torch::kFloat).device(params_[k.params.front()].device()));
    int64_t at = 0;
    for (size_t i : k.params) {
      const auto& p = params_[i];
      // The view has the parameter's own strides (channels-last convolution weights stay channels-last), as DDP's
      // gradient_as_bucket_view; a parameter that is not dense gets a contiguous view.
      k.views.push_back(p.is_non_overlapping_and_dense() ? k.flat.as_strided(p.sizes(), p.strides(), at)
                                                         : k.flat.slice(0, at, at + p.numel()).view(p.sizes()));
      at += p.numel();
      bucket_of_[i] = b;
    }
    buckets_.push_back(std::move(k));
  }
  // Hooks with or without overlap: they also record which parameters backward reached.
  for (size_t i = 0; i < params_.size(); ++i) {
    auto acc = torch::autograd::impl::grad_accumulator(params_[i]);
    hooks_.push_back(acc->add_post_hook(std::make_unique<torch::autograd::utils::LambdaPostHook>(
        [this, i](const torch::autograd::variable_list& outputs, const torch::autograd::variable_list&) {
          ready(i);
          return outputs;
        })));
    accumulators_.push_back(std::move(acc));
  }
  attach_views();
}

BucketedGradientExchange::~BucketedGradientExchange() {
  for (size_t i = 0; i < accumulators_.size(); ++i) accumulators_[i]->del_post_hook(hooks_[i]);
  // The buckets are freed after this body: no started sum may still read or write them. An attempt still open was
  // left without the group's agreement (abandon() closes agreed ones): its peers may never match its sums, so they
  // are aborted rather than waited for (waiting would spin forever on NCCL, over freed memory).
  try {
    if (attempt_open_) reducer_->abort();
    else reducer_->synchronize();
  } catch (const std::exception&) {
    // A destructor does not throw; the reducer's error was reported when it happened.
  }
}

void BucketedGradientExchange::abandon() {
  if (attempt_open_) finish();  // the destructor then waits for the sums
}

void BucketedGradientExchange::attach_views() {
  for (auto& b : buckets_)
    for (size_t k = 0; k < b.params.size(); ++k) {
      auto& p = params_[b.params[k]];
      if (!p.grad().defined() || !p.grad().is_same(b.views[k])) p.mutable_grad() = b.views[k];
    }
}

void BucketedGradientExchange::zero_gradients() {
  // Every attempt at a step ends with finish() on every rank, so the group's sums stay matched when an attempt is
  // abandoned (an out-of-memory on one rank, mid-backward, after the others' hooks started buckets): the retry
  // first completes the abandoned attempt's sums, on every rank alike.
  if (attempt_open_) finish();
  attempt_open_ = true;
  for (auto& b : buckets_) {
    b.flat.zero_();
    b.pending = b.params.size();
    b.started = false;
  }
  attach_views();
  std::fill(seen_.begin(), seen_.end(), false);
  std::fill(used_.begin(), used_.end(), 0.0f);
  next_bucket_ = 0;
  armed_ = false;
  started_in_backward_ = 0;
}

void BucketedGradientExchange::before_backward(bool completes_step) { armed_ = completes_step && options_.overlap; }

void BucketedGradientExchange::ready(size_t param) {
  used_[param] = 1.0f;
  if (!armed_ || seen_[param]) return;
  seen_[param] = true;
  auto& b = buckets_[bucket_of_[param]];
  if (--b.pending == 0) {
    const size_t before = next_bucket_;
    start_ready_buckets();
    started_in_backward_ += static_cast<int64_t>(next_bucket_ - before);
  } else {
    reducer_->progress();
  }
}

void BucketedGradientExchange::start_ready_buckets() {
  // In bucket order only, so every rank starts the same sums in the same order.
  while (next_bucket_ < buckets_.size() && buckets_[next_bucket_].pending == 0) {
    start(buckets_[next_bucket_++]);
  }
}

void BucketedGradientExchange::start(Bucket& b) {
  // A gradient that is no longer its bucket's view (backward with create_graph, AccumulateGrad's out-of-place branch,
  // anything that rebinds .grad) would silently drop out of the sum: copied in and made the view again, as DDP's
  // reducer does (reducer.cpp, mark_variable_ready_dense).
  torch::NoGradGuard ng;
  for (size_t k = 0; k < b.params.size(); ++k) {
    auto& p = params_[b.params[k]];
    const auto& g = p.grad();
    if (g.defined() && g.is_alias_of(b.views[k])) continue;
    if (g.defined()) b.views[k].copy_(g);
    else b.views[k].zero_();
    p.mutable_grad() = b.views[k];
  }
  b.started = true;
  reducer_->start(b.flat);
}

void BucketedGradientExchange::finish() {
  armed_ = false;
  // What backward did not complete (no overlap, a parameter without a gradient this step, an empty shard): now.
  while (next_bucket_ < buckets_.size()) start(buckets_[next_bucket_++]);
  reducer_->wait_all();
  attempt_open_ = false;
  // Which parameters any rank has used: known on the host once backward has returned (the hooks ran), summed over
  // the group in host memory. One never used keeps no gradient, as on one rank, where it never gets one.
  std::vector<float> used = used_;
  if (group_ && group_->size() > 1) group_->allreduce_sum(used.data(), used.size());
  for (size_t i = 0; i < params_.size(); ++i) {
    ever_used_[i] = ever_used_[i] || used[i] > 0;
    if (!ever_used_[i]) params_[i].mutable_grad() = torch::Tensor();
  }
}

std::vector<torch::Tensor> BucketedGradientExchange::gradient_storage() {
  std::vector<torch::Tensor> out;
  for (auto& b : buckets_) out.push_back(b.flat);
  return out;
}

std::string BucketedGradientExchange::describe() const {
  // No fmt in torch's translation units: a CUDA LibTorch wheel ships its own fmt headers, which shadow the system's.
  std::ostringstream o;
  o << "bucketed: " << buckets_.size() << " bucket(s) over " << params_.size() << " parameters ("
    << options_.first_bytes / 1048576.0 << " MiB first, " << options_.cap_bytes / 1048576.0 << " MiB after), "
    << (options_.overlap ? "sums started during backward" : "sums after backward") << ", " << reducer_->name();
  return o.str();
}

}  // namespace xfer::train
