#include "torch_engine.hpp"

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>

#include <torch/torch.h>
#include <torch/version.h>

#include "device_input.hpp"
#include "fused_optimizer.hpp"
#include "gradient_exchange.hpp"
#include "step.hpp"
#include "xfer/core/error.hpp"
#include "xfer/core/logline.hpp"
#include "xfer/model/classifier.hpp"
#include "xfer/train/precision.hpp"

#if defined(XFER_TORCH_CUDA)
#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/CUDAEvent.h>
#include <ATen/cuda/CUDAGeneratorImpl.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <unistd.h>
#endif

namespace xfer::train {

namespace {

std::string generator_state(const at::Generator& g) {
  const auto state = g.get_state();
  return std::string(static_cast<const char*>(state.data_ptr()), static_cast<size_t>(state.numel()));
}

void set_generator_state(at::Generator g, const std::string& bytes) {
  auto state = torch::empty({static_cast<int64_t>(bytes.size())}, torch::kByte);
  std::memcpy(state.data_ptr(), bytes.data(), bytes.size());
  g.set_state(state);
}

int64_t peak_rss_bytes() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::atoll(line.c_str() + 6) * 1024;
  return 0;
}

class TorchEngine final : public Engine {
 public:
  explicit TorchEngine(const EngineContext& c) : context_(c), group_(&c.group) {
    threads_ = c.env.threads > 0 ? c.env.threads : default_threads();
    torch::set_num_threads(threads_);
    device_ = model::choose_device(c.env.device, c.env.local_rank);
#if defined(XFER_TORCH_CUDA)
    // Calls that use the current device (rather than a tensor's) land on this rank's GPU, not GPU 0.
    if (device_.is_cuda()) c10::cuda::set_device(device_.index());
#endif
    // Mixed precision on CUDA: bf16 autocast ("auto" and "bf16"), fp16 with dynamic loss scaling; fp32 on request.
    plan_ = plan_precision(c.trial.precision, device_.is_cuda(), fused_optimizer_available());
    if (!plan_.note.empty()) log::info("trial " + c.key + ": " + plan_.note);
    step_.autocast = plan_.autocast;
    step_.autocast_dtype = plan_.bf16 ? at::kBFloat16 : at::kHalf;
    scales_loss_ = plan_.loss_scaling;
    model::enable_cuda_fast_math(plan_.tf32, plan_.cudnn_benchmark);
    if (!device_.is_cuda() && c.env.keep_host_memory) {
      const char* v = std::getenv("XFER_KEEP_HOST_MEMORY");
      if (!(v && std::string(v) == "0") && !model::keep_host_memory())
        log::debug("glibc's malloc not tunable here: freed activations go back to the kernel");
    }
    step_.criterion.multilabel = c.data.multilabel;
    step_.criterion.classes = c.data.num_classes();
    step_.criterion.label_smoothing = c.trial.label_smoothing;
    step_.criterion.device = device_;
  }

  void prepare() override {
    // Every rank's model and optimizer first, then agreement, then the collective NCCL bootstrap: a rank that failed
    // here (a backbone it cannot load, an out-of-memory in model_->to) must not leave its peers blocked in it.
    std::exception_ptr failed;
    try {
      build_model();
    } catch (...) {
      failed = std::current_exception();
    }
    if (group_->any(failed != nullptr)) {
      if (failed) std::rethrow_exception(failed);
      throw Error("trial " + context_.key + ": a data-parallel peer could not build its model (its log says why)");
    }
    exchange_ = make_exchange();
    step_.before_backward = [this](bool completes_step) { exchange_->before_backward(completes_step); };
    if (group_->size() > 1) log::debug("trial " + context_.key + ": gradient exchange " + exchange_->describe());
  }

  void build_model() {
    const auto& c = context_;
    const auto& t = c.trial;
#if defined(XFER_TORCH_CUDA)
    // The peak reported is this trial's, not the worker process's so far.
    if (device_.is_cuda()) c10::cuda::CUDACachingAllocator::resetPeakStats(device_.index());
#endif
    model_ = std::make_unique<model::Classifier>(c.env.backbone, t.input_size, c.data.num_classes(),
                                                 static_cast<uint64_t>(t.seed));
    if (!c.env.head_init.empty()) model_->load_head(c.env.head_init);
    model_->to(device_);
    model_->set_channels_last(c.env.channels_last);
    model_->train(true);
    params_ = model_->parameters();
    const double wd = t.optimizer_weight_decay();
    if (c.trial.optimizer == Optimizer::adamw)
      opt_ = std::make_unique<torch::optim::AdamW>(
          params_, torch::optim::AdamWOptions(t.lr).betas({t.beta1, t.beta2}).eps(t.eps).weight_decay(wd));
    else
      opt_ = std::make_unique<torch::optim::SGD>(
          params_, torch::optim::SGDOptions(t.lr).momentum(t.momentum).nesterov(t.nesterov).weight_decay(wd));
    torch::manual_seed(static_cast<uint64_t>(t.seed) + 1);  // dropout inside backbones
  }

  std::string device() const override { return device_.str(); }
  int threads() const override { return threads_; }
  int64_t parameters() const override { return model_->parameter_count(); }
  int feature_dim() const override { return model_->feature_dim(); }
  bool scales_loss() const override { return scales_loss_; }

  void configure_loader(data::LoaderOptions& o) override {
    if (!device_.is_cuda()) return;
    // Pinned host buffers for asynchronous copies. The host allocator rounds each up to a power of two and keeps it
    // page-locked for the process's life: a slot per decode thread and two ready is enough to keep the GPU fed.
    o.prefetch = std::min(o.prefetch, o.threads + 2);
    o.allocate = [this](size_t n) {
      auto tensor = torch::empty({static_cast<int64_t>(n)}, torch::TensorOptions().dtype(torch::kByte).pinned_memory(true));
      void* p = tensor.data_ptr();
      std::lock_guard<std::mutex> lock(pinned_mu_);
      pinned_.emplace(p, tensor);
      return p;
    };
    o.release = [this](void* p) {
      std::lock_guard<std::mutex> lock(pinned_mu_);
      pinned_.erase(p);
    };
  }

  std::unique_ptr<data::BatchSource> make_input(const std::vector<int64_t>& indices, const data::TransformSettings& tf,
                                                const data::LoaderOptions& o) override {
    const auto& env = context_.env;
    if (env.input_pipeline != InputPipeline::device) return nullptr;
    if (tf.train && tf.augmentation != Augmentation::none) {
      log::info("trial " + context_.key + ": augmentation " + name_str(tf.augmentation) +
                " runs on the host pipeline; the device pipeline crops and flips only");
      return nullptr;
    }
    const std::string folder = env.input_cache_dir.empty()
                                   ? (std::filesystem::path(env.checkpoint_dir).parent_path() / "input-cache").string()
                                   : env.input_cache_dir;
    const int builders = env.loader_threads > 0 ? env.loader_threads : threads_;
    // Group rank 0 builds a missing cache; the others open it after (or learn that it failed).
    std::unique_ptr<DeviceInput> input;
    std::string failure;
    Error::Kind kind = Error::Kind::runtime;  // kept: a full disk (environment) or a damaged cache (input) is not the trial's
    if (group_->rank() == 0) try {
        input = std::make_unique<DeviceInput>(context_.data, indices, tf, o, folder, device_, builders);
      } catch (const Error& e) {
        failure = e.what(), kind = e.kind();
      } catch (const std::exception& e) {
        failure = e.what();
      }
    if (group_->any(!failure.empty()))
      throw Error(failure.empty() ? "a peer could not build the input cache" : failure, kind);
    if (!input) input = std::make_unique<DeviceInput>(context_.data, indices, tf, o, folder, device_, builders);
    if (input->cache().built_now())
      log::debug("trial " + context_.key + ": input cache " + input->cache().path() + " built");
    return input;
  }

  // A batch's images on the device: the device pipeline's own tensor, or the host loader's buffer copied there.
  torch::Tensor images(const data::Batch& b) {
    if (b.device_images) return DeviceInput::images(b);
    auto x = torch::from_blob(b.data, {b.n, 3, b.size, b.size}, torch::kFloat).to(device_, device_.is_cuda());
#if defined(XFER_TORCH_CUDA)
    if (device_.is_cuda()) {
      // The copy reads the loader's pinned slot when the stream gets there: the loader refills the slot only after
      // it (its worker waits on this event, not the training thread).
      auto copied = std::make_shared<at::cuda::CUDAEvent>();
      copied->record(c10::cuda::getCurrentCUDAStream(device_.index()));
      b.hold_until([copied] { copied->synchronize(); });  // sync-ok: runs in the loader's worker
    }
#endif
    return x;
  }

  StepAttempt forward_backward(const data::Batch& b, int micro_batches, double loss_scale) override {
    StepAttempt a;
    try {
      exchange_->zero_gradients();
      auto x = images(b);
      step_.micro_batches = micro_batches;
      step_.loss_scale = loss_scale;
      a.loss = train::forward_backward(*model_, b, x, step_).value();
    } catch (const c10::Error& e) {
      if (is_out_of_memory(e)) a.out_of_memory = true;
      else a.failure = e.what_without_backtrace();
    } catch (const std::exception& e) {
      if (is_out_of_memory(e)) a.out_of_memory = true;
      else a.failure = e.what();
    }
    return a;
  }

  void release_cached_memory() override {
#if defined(XFER_TORCH_CUDA)
    c10::cuda::CUDACachingAllocator::emptyCache();
#endif
  }

  void exchange_gradients() override { exchange_->finish(); }
  void abandon_step() override {
    if (exchange_) exchange_->abandon();
  }

  bool unscale_gradients(double loss_scale) override {
    auto grads = exchange_->gradient_storage();  // the flat buckets: a handful of tensors
    if (grads.empty()) return true;
    if (device_.is_cuda()) {
      // GradScaler's kernel: one launch over every tensor, one host synchronisation for the verdict.
      auto found_inf = torch::zeros({1}, torch::TensorOptions().dtype(torch::kFloat).device(device_));
      auto inv_scale = torch::full({1}, 1.0 / loss_scale, torch::TensorOptions().dtype(torch::kFloat).device(device_));
      at::_amp_foreach_non_finite_check_and_unscale_(grads, found_inf, inv_scale);
      return found_inf.item<float>() == 0.0f;
    }
    bool finite = true;
    for (auto& g : grads) {
      g.div_(loss_scale);
      finite = finite && torch::isfinite(g).all().item<bool>();
    }
    return finite;
  }

  void apply_step(double learning_rate) override {
    if (plan_.fused_optimizer) {
      const auto& t = context_.trial;
      if (t.optimizer == Optimizer::adamw)
        fused_adamw_step(*opt_, params_, learning_rate, t.beta1, t.beta2, t.optimizer_weight_decay(), t.eps, fused_);
      else
        fused_sgd_step(*opt_, params_, learning_rate, t.momentum, t.nesterov, t.optimizer_weight_decay());
      return;
    }
    for (auto& group : opt_->param_groups()) group.options().set_lr(learning_rate);
    opt_->step();
  }

  void sync_buffers() override {
    if (group_->size() == 1) return;
    torch::NoGradGuard ng;
    for (auto& b : model_->buffers()) {
      if (!b.is_floating_point()) continue;
      auto host = b.to(torch::kCPU, torch::kFloat).contiguous();
      group_->broadcast(host.data_ptr<float>(), static_cast<size_t>(host.numel()), 0);
      b.copy_(host.to(b.device(), b.scalar_type()));
    }
  }

  SplitOutputs forward_split(data::BatchSource& loader) override {
    model_->train(false);
    torch::NoGradGuard ng;
    SplitOutputs out;
    // Accumulated on the device, copied to the host once per split: no synchronisation per batch.
    torch::Tensor loss_sum = torch::zeros({}, torch::TensorOptions().dtype(torch::kDouble).device(device_));
    std::vector<torch::Tensor> probs;
    while (auto b = loader.next()) {
      if (b->n == 0) continue;
      auto x = images(*b);
      torch::Tensor logits;
      {
        AutocastScope autocast(step_.autocast, step_.autocast_dtype);
        logits = model_->forward(x).to(torch::kFloat);
      }
      loss_sum += criterion_sum(step_.criterion, logits, batch_targets(step_.criterion, *b)).to(torch::kDouble);
      out.count += b->n;
      probs.push_back(step_.criterion.multilabel ? torch::sigmoid(logits) : torch::softmax(logits, 1));
      out.samples.insert(out.samples.end(), b->samples.begin(), b->samples.end());
    }
    out.loss_sum = loss_sum.item<double>();
    if (!probs.empty()) {
      const auto all = torch::cat(probs).to(torch::kCPU).contiguous();
      out.scores.assign(all.data_ptr<float>(), all.data_ptr<float>() + all.numel());
    }
    model_->train(true);
    return out;
  }

  std::string save_state() override {
    torch::serialize::OutputArchive a;
    torch::NoGradGuard ng;
    for (const auto& [name, tensor] : model_->state()) a.write(name, tensor.to(torch::kCPU));
    torch::serialize::OutputArchive o;
    opt_->save(o);
    a.write("optimizer", o);
    std::string out;
    out.reserve(archive_bytes_hint_);
    a.save_to([&out](const void* p, size_t n) {
      out.append(static_cast<const char*>(p), n);
      return n;
    });
    archive_bytes_hint_ = std::max(archive_bytes_hint_, out.size());
    return out;
  }

  void load_state(const std::string& bytes) override {
    std::istringstream in(bytes);
    torch::serialize::InputArchive a;
    a.load_from(in, device_);
    torch::NoGradGuard ng;
    for (auto& [name, tensor] : model_->state()) {
      torch::Tensor v;
      a.read(name, v);
      tensor.copy_(v);
    }
    torch::serialize::InputArchive o;
    a.read("optimizer", o);
    opt_->load(o);
    fused_.steps.clear();  // the fused AdamW's step counts come from the loaded state
  }

  // The CPU generator's state, then on CUDA the trial device's generator's (dropout masks of CUDA trials come from
  // it), as torch.save of Python's RNG states keeps both. The CPU state has a fixed size, which splits the two.
  std::string random_state() override {
    std::string out = generator_state(at::detail::getDefaultCPUGenerator());
#if defined(XFER_TORCH_CUDA)
    if (device_.is_cuda()) out += generator_state(at::cuda::detail::getDefaultCUDAGenerator(device_.index()));
#endif
    return out;
  }

  void restore_random_state(const std::string& bytes) override {
    at::Generator cpu = at::detail::getDefaultCPUGenerator();
    const size_t cpu_bytes = generator_state(cpu).size();
    set_generator_state(cpu, bytes.substr(0, std::min(cpu_bytes, bytes.size())));
#if defined(XFER_TORCH_CUDA)
    // A checkpoint written before the CUDA state was kept has the CPU state alone.
    if (device_.is_cuda() && bytes.size() > cpu_bytes)
      set_generator_state(at::cuda::detail::getDefaultCUDAGenerator(device_.index()), bytes.substr(cpu_bytes));
#endif
  }

  void save_model(const std::string& path) override {
    torch::serialize::OutputArchive a;
    for (const auto& [name, tensor] : model_->state()) a.write(name, tensor.to(torch::kCPU));
    a.save_to(path);
  }

  void save_backbone(const std::string& path) override { model_->save_backbone(path); }

  int64_t peak_memory_bytes() override {
#if defined(XFER_TORCH_CUDA)
    if (device_.is_cuda())
      return static_cast<int64_t>(
          c10::cuda::CUDACachingAllocator::getDeviceStats(device_.index()).allocated_bytes[0].peak);
#endif
    return peak_rss_bytes();
  }

 private:
  // Bucketed and overlapped with backward by default (NCCL on CUDA when built with it, MPI otherwise); a group of
  // one has nothing to exchange.
  std::unique_ptr<GradientExchange> make_exchange() {
    const ExchangeMode kind = context_.env.gradient_exchange;
    if (group_->size() == 1 || kind == ExchangeMode::flat)
      return std::make_unique<GroupGradientExchange>(params_, *group_, device_);
    BucketOptions o;
    o.overlap = kind == ExchangeMode::overlap;
    std::unique_ptr<BucketReducer> reducer;
    if (device_.is_cuda() && built_with_nccl()) {
      // Two ranks on one GPU (--device cuda:N, or more ranks per node than GPUs) cannot form a NCCL communicator:
      // every rank learns it alike and the group sums over MPI instead, which works, at MPI's speed.
      if (const auto shared = duplicate_device(group_members())) {
        log::warn("trial " + context_.key + ": " + *shared + "; summing gradients over MPI instead of NCCL (give "
                  "each rank its own GPU: ranks per node <= GPUs, --device cuda without an index)");
      } else {
        HangPolicy hang;
        const char* t = std::getenv("XFER_NCCL_TIMEOUT");
        hang.timeout_seconds = t ? std::atof(t) : 600;
        reducer = nccl_reducer(*group_, device_, hang);
      }
    }
    if (!reducer) reducer = group_reducer(*group_, device_);
    return std::make_unique<BucketedGradientExchange>(params_, std::move(reducer), o, group_);
  }

  // Every member's "host/GPU UUID", in group rank order.
  std::vector<std::string> group_members() {
    std::string mine = "cpu";
#if defined(XFER_TORCH_CUDA)
    char host[256] = {};
    gethostname(host, sizeof host - 1);
    const auto* props = at::cuda::getDeviceProperties(device_.index());
    std::ostringstream uuid;
    uuid << std::hex;
    for (unsigned char byte : props->uuid.bytes) uuid << (byte >> 4) << (byte & 15);
    mine = std::string(host) + "/" + uuid.str();
#endif
    std::vector<std::string> members(static_cast<size_t>(group_->size()));
    for (int r = 0; r < group_->size(); ++r) {
      members[static_cast<size_t>(r)] = r == group_->rank() ? mine : "";
      group_->broadcast(members[static_cast<size_t>(r)], r);
    }
    return members;
  }


  const EngineContext context_;  // references, valid for the trial
  Group* group_;
  int threads_ = 1;
  torch::Device device_{torch::kCPU};
  bool scales_loss_ = false;
  StepSettings step_;
  std::unique_ptr<model::Classifier> model_;
  std::vector<torch::Tensor> params_;
  std::unique_ptr<torch::optim::Optimizer> opt_;
  std::unique_ptr<GradientExchange> exchange_;
  PrecisionPlan plan_;
  FusedAdamWState fused_;  // fused AdamW's step counts on the device
  size_t archive_bytes_hint_ = 0;
  std::mutex pinned_mu_;
  std::map<void*, torch::Tensor> pinned_;
};

}  // namespace

std::unique_ptr<Engine> TorchEngineFactory::make(const EngineContext& context) const {
  return std::make_unique<TorchEngine>(context);
}

Fault TorchEngineFactory::classify(const std::exception& e) const {
  if (const auto* c = dynamic_cast<const c10::Error*>(&e)) return {is_out_of_memory(*c), c->what_without_backtrace()};
  return {is_out_of_memory(e), e.what()};
}

}  // namespace xfer::train
