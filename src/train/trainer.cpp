// The fine-tuning loop. Torch lives here and in model/; everything the sweep sees is in trial.hpp.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <mutex>
#include <fstream>
#include <future>
#include <sstream>
#include <thread>

#include <torch/cuda.h>
#include <torch/torch.h>
#include <torch/version.h>

#include "checkpoint.hpp"
#include "xfer/core/error.hpp"
#include "xfer/core/logline.hpp"
#include "xfer/data/loader.hpp"
#include "xfer/metrics/metrics.hpp"
#include "xfer/model/classifier.hpp"
#include "xfer/train/trial.hpp"

#if defined(XFER_TORCH_CUDA)
#include <c10/cuda/CUDACachingAllocator.h>
#endif

namespace xfer::train {

namespace {

// Text without fmt or spdlog: LibTorch 2.x ships its own fmt, which shadows the system's (and breaks spdlog) in any
// translation unit that includes torch. Lines go out through core/logline.hpp.
std::string num(double v, int digits) {
  char b[64];
  std::snprintf(b, sizeof b, "%.*g", digits, v);
  return b;
}
template <class... A>
std::string cat(const A&... a) {
  std::ostringstream s;
  (s << ... << a);
  return s.str();
}

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
// A loss above this multiple of the trial's first-step loss (about ln K with a fresh head) counts as diverged:
// batch-normalised networks at the grid's highest learning rates grow their loss by orders of magnitude long
// before it overflows to inf/NaN.
constexpr double kDivergenceFactor = 1000.0;

double learning_rate(const grid::TrialConfig& t, int epoch, int64_t step, int64_t steps_per_epoch) {
  const double base = t.lr;
  const int warm = t.warmup_epochs;
  const int64_t spe = std::max<int64_t>(1, steps_per_epoch);
  if (warm > 0 && epoch < warm)
    return base * static_cast<double>(epoch * spe + step + 1) / static_cast<double>(warm * spe);
  const int e = epoch - warm, E = t.epochs - warm;
  if (t.schedule == "cosine")  // CosineAnnealingLR(T_max = epochs), stepped once per epoch, eta_min 0 (the paper)
    return base * (1.0 + std::cos(M_PI * e / E)) / 2.0;
  if (t.schedule == "cosine_step")
    return base * (1.0 + std::cos(M_PI * static_cast<double>(e * spe + step) / static_cast<double>(E * spe))) / 2.0;
  int passed = 0;  // step: × gamma at each milestone reached
  for (int m : t.step_milestones) passed += epoch >= m;
  return base * std::pow(t.step_gamma, passed);
}

int64_t peak_rss_bytes() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::atoll(line.c_str() + 6) * 1024;
  return 0;
}

bool is_oom(const c10::Error& e) {
  return dynamic_cast<const c10::OutOfMemoryError*>(&e) != nullptr ||
         std::string(e.what()).find("out of memory") != std::string::npos;
}

// Everything the loop needs, built once per trial.
class Trainer {
 public:
  Trainer(const grid::TrialConfig& t, const data::Dataset& d, const Environment& env, Group& group)
      : t_(t), d_(d), env_(env), g_(group) {}

  Result run() {
    Result r;
    const auto started = std::chrono::steady_clock::now();
    try {
      setup(r);
      loop(r);
    } catch (const Error& e) {
      r.status = Status::failed;
      r.message = e.what();
    } catch (const c10::Error& e) {
      r.status = is_oom(e) ? Status::oom : Status::failed;
      r.message = e.what_without_backtrace();
    } catch (const std::exception& e) {
      r.status = Status::failed;
      r.message = e.what();
    }
    // What the trial reports must be on disk: wait for a checkpoint still being written.
    try {
      await_checkpoint();
    } catch (const std::exception& e) {
      if (r.status != Status::failed) {
        r.status = Status::failed;
        r.message = e.what();
      }
    }
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    if (train_loader_) {
      r.data_problems = train_loader_->problems();
      for (auto* l : {val_loader_.get(), test_loader_.get()})
        if (l)
          for (const auto& p : l->problems()) r.data_problems.push_back(p);
    }
    return r;
  }

 private:
  void setup(Result& r) {
    threads_ = env_.threads > 0 ? env_.threads : default_threads();
    torch::set_num_threads(threads_);
    r.threads = threads_;
    device_ = model::choose_device(env_.device, env_.local_rank);
    r.device = device_.str();
    cuda_ = device_.is_cuda();
    if (cuda_) {
      // Mixed precision on CUDA: bf16 autocast ("auto" and "bf16"), fp16 with dynamic loss scaling; fp32 on request.
      amp_ = t_.precision == "auto" || t_.precision == "bf16" || t_.precision == "fp16";
      amp_dtype_ = t_.precision == "fp16" ? at::kHalf : at::kBFloat16;
      loss_scale_ = t_.precision == "fp16" ? 65536.0 : 1.0;
    } else if (t_.precision == "bf16" || t_.precision == "fp16") {
      log::info(cat("trial ", key_, ": precision ", t_.precision, " applies on CUDA; training in fp32 on ", device_.str()));
    }
    if (!cuda_ && env_.keep_host_memory) {
      const char* v = std::getenv("XFER_KEEP_HOST_MEMORY");
      if (!(v && std::string(v) == "0") && !model::keep_host_memory())
        log::debug("glibc's malloc not tunable here: freed activations go back to the kernel");
    }
    key_ = t_.key().str();
    const auto t0 = std::chrono::steady_clock::now();
    model_ = std::make_unique<model::Classifier>(env_.backbone, t_.input_size, d_.num_classes(),
                                                 static_cast<uint64_t>(t_.seed));
    if (!env_.head_init.empty()) model_->load_head(env_.head_init);
    model_->to(device_);
    model_->set_channels_last(env_.channels_last);
    r.parameters = model_->parameter_count();
    r.feature_dim = model_->feature_dim();
    params_ = model_->parameters();
    const double wd = t_.optimizer_weight_decay();
    if (t_.optimizer == "adamw")
      opt_ = std::make_unique<torch::optim::AdamW>(
          params_, torch::optim::AdamWOptions(t_.lr).betas({t_.beta1, t_.beta2}).eps(t_.eps).weight_decay(wd));
    else
      opt_ = std::make_unique<torch::optim::SGD>(
          params_, torch::optim::SGDOptions(t_.lr).momentum(t_.momentum).nesterov(t_.nesterov).weight_decay(wd));
    torch::manual_seed(static_cast<uint64_t>(t_.seed) + 1);  // dropout inside backbones

    // Data: the train stream is the trial's; validation and test are sharded across the group for evaluation.
    data::TransformSettings train_tf;
    train_tf.size = t_.input_size;
    train_tf.crop_pct = t_.crop_pct;
    for (int c = 0; c < 3; ++c) train_tf.mean[c] = static_cast<float>(t_.mean[c]), train_tf.std[c] = static_cast<float>(t_.std[c]);
    train_tf.bgr_quirk = t_.bgr_quirk;
    train_tf.seed = static_cast<uint64_t>(t_.seed);
    data::TransformSettings eval_tf = train_tf;
    train_tf.train = !env_.deterministic_input;
    train_tf.flips = t_.flips;
    train_tf.augmentation = t_.augmentation;
    const int loader_threads = env_.loader_threads > 0 ? env_.loader_threads : std::max(1, threads_ / 2);
    auto options = [&](bool train) {
      data::LoaderOptions o;
      o.batch_size = t_.batch_size;
      o.rank = g_.rank();
      o.world = g_.size();
      o.shuffle = train && !env_.deterministic_input;
      o.min_shard = train ? 2 : 0;
      o.seed = static_cast<uint64_t>(t_.seed);
      o.threads = loader_threads;
      o.prefetch = std::max(2, 2 * loader_threads);
      o.cache = !train;
      if (cuda_) {  // pinned host buffers for asynchronous copies
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
      return o;
    };
    const auto train_idx = d_.indices(data::Split::train);
    if (train_idx.empty()) throw Error::input("dataset " + d_.name + " has no training samples");
    train_loader_ = std::make_unique<data::Loader>(d_, train_idx, train_tf, options(true));
    val_loader_ = std::make_unique<data::Loader>(d_, d_.indices(data::Split::val), eval_tf, options(false));
    val_is_test_ = d_.validation == "paper";
    if (!val_is_test_) test_loader_ = std::make_unique<data::Loader>(d_, d_.indices(data::Split::test), eval_tf, options(false));
    micro_ = std::max(1, env_.micro_batches);
    if (!env_.step_log.empty() && g_.rank() == 0) step_log_.open(env_.step_log, std::ios::app);
    log::debug(cat("trial ", key_, ": model, optimizer and loaders ready in ",
                   num(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 3), " s"));
  }

  // ---- checkpoints -------------------------------------------------------------------------------------------
  std::string save_tensors() {
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

  void load_tensors(const std::string& bytes) {
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
  }

  void checkpoint(int epochs_done, int64_t next_batch) {
    // Every rank holds the same weights (all-reduced gradients, broadcast buffers): rank 0 writes.
    if (g_.rank() == 0) {
      Checkpoint c;
      c.meta.trial_key = key_;
      c.meta.canonical = t_.canonical_text();
      c.meta.epochs_done = epochs_done;
      c.meta.next_batch = next_batch;
      c.meta.partial_loss_sum = loss_sum_;
      c.meta.partial_steps = steps_;
      c.meta.partial_images = images_;
      c.meta.partial_seconds = train_seconds_;
      c.meta.epochs = result_->epochs;
      c.meta.best_epoch = result_->best_epoch;
      c.meta.best_val = result_->best_val;
      c.meta.test_at_best = result_->test_at_best;
      c.meta.val = result_->val;
      c.meta.test = result_->test;
      const auto state = at::detail::getDefaultCPUGenerator().get_state();
      c.meta.rng_state.assign(static_cast<const char*>(state.data_ptr()), static_cast<size_t>(state.numel()));
      c.meta.micro_batches = micro_;
      c.meta.loss_scale = loss_scale_;
      c.meta.first_loss = first_loss_;
      await_checkpoint();
      const auto t0 = std::chrono::steady_clock::now();
      // After the last epoch the weights are not needed: the trial is over, and a job that dies before its result
      // is recorded resumes from the result alone (the previous checkpoint, with weights, stays as the fallback).
      if (epochs_done < t_.epochs) c.tensors = save_tensors();
      const double serialise = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      // The tensors are serialised here (the next step changes them); writing, fsync and rename go on in the
      // background while training continues. One write at a time; the trial waits for it before it writes the
      // next, removes checkpoints or returns its result.
      pending_write_ = std::async(std::launch::async, [this, c = std::move(c), serialise] {
        const auto t1 = std::chrono::steady_clock::now();
        const std::string path = write_checkpoint(env_.checkpoint_dir, c);
        log::debug(cat("trial ", key_, ": checkpoint ", path, " (", num(c.tensors.size() / 1048576.0, 4), " MiB): ",
                       num(serialise, 3), " s to serialise, ",
                       num(std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count(), 3),
                       " s to write in the background"));
      });
    }
    g_.barrier();
  }

  // Waits for the checkpoint being written in the background; its failure (disk full, …) is thrown here.
  void await_checkpoint() {
    if (pending_write_.valid()) pending_write_.get();
  }

  bool resume() {
    auto c = load_latest_checkpoint(env_.checkpoint_dir, key_, t_.canonical_text());
    if (!c) return false;
    if (!c->tensors.empty()) load_tensors(c->tensors);
    else if (c->meta.epochs_done < t_.epochs)
      throw Error(cat(c->path, ": a checkpoint without weights before the last epoch (", c->meta.epochs_done, " of ",
                      t_.epochs, "); remove it to resume from the one before"));
    const auto& m = c->meta;
    start_epoch_ = m.epochs_done;
    start_batch_ = m.next_batch;
    loss_sum_ = m.partial_loss_sum;
    steps_ = m.partial_steps;
    images_ = m.partial_images;
    train_seconds_ = m.partial_seconds;
    result_->epochs = m.epochs;
    result_->best_epoch = m.best_epoch;
    result_->best_val = m.best_val;
    result_->test_at_best = m.test_at_best;
    result_->val = m.val;
    result_->test = m.test;
    auto state = torch::empty({static_cast<int64_t>(m.rng_state.size())}, torch::kByte);
    std::memcpy(state.data_ptr(), m.rng_state.data(), m.rng_state.size());
    at::Generator gen = at::detail::getDefaultCPUGenerator();
    gen.set_state(state);
    micro_ = m.micro_batches;
    loss_scale_ = m.loss_scale;
    first_loss_ = m.first_loss;
    result_->resumed_from_epoch = start_epoch_;
    log::info(cat("trial ", key_, ": resuming from ", c->path, " (epoch ", start_epoch_, ", batch ", start_batch_, ")"));
    return true;
  }

  // ---- one optimisation step --------------------------------------------------------------------------------
  torch::Tensor criterion_sum(const torch::Tensor& logits, const data::Batch& b, int64_t lo, int64_t hi) {
    const int64_t n = hi - lo;
    if (d_.multilabel) {
      auto y = torch::from_blob(const_cast<float*>(b.targets.data()) + lo * d_.num_classes(), {n, d_.num_classes()},
                                torch::kFloat).to(device_);
      return torch::nn::functional::binary_cross_entropy_with_logits(
          logits.to(torch::kFloat), y,
          torch::nn::functional::BinaryCrossEntropyWithLogitsFuncOptions().reduction(torch::kSum)) /
             static_cast<double>(d_.num_classes());
    }
    auto y = torch::from_blob(const_cast<int32_t*>(b.labels.data()) + lo, {n}, torch::kInt).to(torch::kLong).to(device_);
    return torch::nn::functional::cross_entropy(
        logits.to(torch::kFloat), y,
        torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum).label_smoothing(t_.label_smoothing));
  }

  void set_amp(bool on) { model::set_autocast(on, amp_dtype_); }

  // Forward and backward of this rank's shard, in micro-batches; the loss is a sum over samples divided by the
  // global batch, so all-reducing gradients by sum gives the full batch's mean gradient.
  double forward_backward(const data::Batch& b, torch::Tensor& x) {
    double loss_value = 0;
    const int64_t n = b.n;
    // Never a micro-batch of one sample (BatchNorm cannot train on it).
    const int m = static_cast<int>(std::min<int64_t>(micro_, std::max<int64_t>(1, n / 2)));
    for (int k = 0; k < m && n > 0; ++k) {
      const int64_t lo = n * k / m, hi = n * (k + 1) / m;
      if (hi <= lo) continue;
      if (amp_) set_amp(true);
      auto logits = model_->forward(x.slice(0, lo, hi));
      if (amp_) set_amp(false);
      auto loss = criterion_sum(logits, b, lo, hi) / static_cast<double>(b.global_n);
      loss_value += loss.item<double>();
      (loss_scale_ != 1.0 ? loss * loss_scale_ : loss).backward();
    }
    return loss_value;
  }

  void allreduce_gradients() {
    if (g_.size() == 1) return;
    // Flattened into one bucket; staged through host memory unless MPI is CUDA-aware.
    std::vector<torch::Tensor> grads;
    for (auto& p : params_) {
      if (!p.grad().defined()) p.mutable_grad() = torch::zeros_like(p);
      grads.push_back(p.grad().reshape({-1}));
    }
    auto flat = torch::cat(grads);
    const bool direct = !cuda_ || g_.accepts_device_pointers();
    auto buffer = direct ? flat.contiguous() : flat.to(torch::kCPU).contiguous();
    g_.allreduce_sum(buffer.data_ptr<float>(), static_cast<size_t>(buffer.numel()));
    if (!direct) buffer = buffer.to(device_);
    int64_t at = 0;
    torch::NoGradGuard ng;
    for (auto& p : params_) {
      const int64_t k = p.numel();
      p.mutable_grad().copy_(buffer.slice(0, at, at + k).view_as(p));
      at += k;
    }
  }

  void sync_buffers() {
    if (g_.size() == 1) return;
    torch::NoGradGuard ng;
    for (auto& b : model_->buffers()) {
      if (!b.is_floating_point()) continue;
      auto host = b.to(torch::kCPU, torch::kFloat).contiguous();
      g_.broadcast(host.data_ptr<float>(), static_cast<size_t>(host.numel()), 0);
      b.copy_(host.to(b.device(), b.scalar_type()));
    }
  }

  // ---- evaluation -------------------------------------------------------------------------------------------
  struct Eval {
    double metric = kNaN, loss = kNaN;
    std::string note;
    Predictions pred;
  };

  Eval evaluate(data::Loader& loader, int epoch) {
    model_->train(false);
    torch::NoGradGuard ng;
    std::vector<int64_t> samples;
    std::vector<float> scores;
    double loss_sum = 0;
    int64_t count = 0;
    loader.start_epoch(epoch);
    while (auto b = loader.next()) {
      if (b->n == 0) continue;
      auto x = torch::from_blob(b->data, {b->n, 3, b->size, b->size}, torch::kFloat).to(device_, cuda_);
      if (amp_) set_amp(true);
      auto logits = model_->forward(x).to(torch::kFloat);
      if (amp_) set_amp(false);
      loss_sum += criterion_sum(logits, *b, 0, b->n).item<double>();
      count += b->n;
      auto probs = (d_.multilabel ? torch::sigmoid(logits) : torch::softmax(logits, 1)).to(torch::kCPU).contiguous();
      samples.insert(samples.end(), b->samples.begin(), b->samples.end());
      scores.insert(scores.end(), probs.data_ptr<float>(), probs.data_ptr<float>() + probs.numel());
    }
    model_->train(true);
    Eval e;
    double sums[2] = {loss_sum, static_cast<double>(count)};
    g_.allreduce_sum(sums, 2);
    e.loss = sums[1] > 0 ? sums[0] / sums[1] : kNaN;
    samples = g_.gather(samples, 0);
    scores = g_.gather(scores, 0);
    if (g_.rank() != 0) return e;
    const int K = d_.num_classes();
    e.pred.classes = K;
    e.pred.samples = samples;
    e.pred.scores = scores;
    metrics::Labels y;
    y.n = static_cast<int64_t>(samples.size());
    y.k = K;
    y.multilabel = d_.multilabel;
    for (int64_t s : samples) {
      const auto& smp = d_.samples[static_cast<size_t>(s)];
      if (d_.multilabel) {
        std::vector<uint8_t> row(K, 0);
        for (auto l : smp.labels) row[l] = 1;
        y.multi.insert(y.multi.end(), row.begin(), row.end());
      } else {
        y.single.push_back(smp.label);
      }
    }
    metrics::Scores s;
    s.n = y.n;
    s.k = K;
    s.values.assign(scores.begin(), scores.end());
    try {
      e.metric = metrics::evaluate(metrics::parse_metric(t_.metric), y, s);
    } catch (const metrics::Undefined& u) {
      e.note = u.what();
    } catch (const Error& err) {
      e.note = err.what();  // NaN probabilities from a diverging model
    }
    return e;
  }

  // ---- the loop ---------------------------------------------------------------------------------------------
  void loop(Result& r) {
    result_ = &r;
    r.status = Status::done;
    resume();
    const int64_t spe = train_loader_->batches_per_epoch();
    const bool higher = t_.metric != "log_loss";
    for (int epoch = start_epoch_; epoch < t_.epochs; ++epoch) {
      model_->train(true);
      const int64_t first = epoch == start_epoch_ ? start_batch_ : 0;
      if (first == 0) loss_sum_ = 0, steps_ = 0, images_ = 0, train_seconds_ = 0, wait_seconds_ = 0;
      train_loader_->start_epoch(epoch, first);
      double lr = learning_rate(t_, epoch, first, spe);
      for (int64_t step = first;; ++step) {
        if (g_.any(env_.stop && env_.stop->load())) {
          checkpoint(epoch, step);
          r.status = Status::interrupted;
          r.message = cat("stopped at epoch ", epoch, " batch ", step, " (checkpointed)");
          return;
        }
        const auto t0 = std::chrono::steady_clock::now();
        std::shared_ptr<const data::Batch> b;
        std::string err;
        try {
          b = train_loader_->next();
        } catch (const std::exception& e) {
          err = e.what();
        }
        wait_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        if (g_.any(!err.empty())) throw Error(err.empty() ? "a data-parallel peer failed to load its batch" : err);
        if (g_.any(!b)) break;
        lr = learning_rate(t_, epoch, step, spe);
        for (auto& group : opt_->param_groups()) group.options().set_lr(lr);
        double loss = 0;
        bool oom = false;
        std::string failure;
        auto x = torch::from_blob(b->data, {b->n, 3, b->size, b->size}, torch::kFloat).to(device_, cuda_);
        while (true) {
          opt_->zero_grad();
          oom = false;
          try {
            loss = forward_backward(*b, x);
          } catch (const c10::Error& e) {
            if (is_oom(e)) oom = true;
            else failure = e.what_without_backtrace();
          } catch (const std::exception& e) {
            failure = e.what();
          }
          if (g_.any(!failure.empty())) throw Error(failure.empty() ? "a data-parallel peer failed" : failure);
          if (!g_.any(oom)) break;
          if (!env_.oom_retry || micro_ >= std::max<int64_t>(1, b->n)) {
            r.status = Status::oom;
            r.message = cat("out of memory at epoch ", epoch, " step ", step, " with ", micro_, " micro-batch(es) of the ",
                            t_.batch_size, "-sample batch");
            finish_early(r);
            return;
          }
          micro_ *= 2;
          r.micro_batches = micro_;
#if defined(XFER_TORCH_CUDA)
          c10::cuda::CUDACachingAllocator::emptyCache();
#endif
          log::warn(cat("trial ", key_, ": out of memory; retrying with ", micro_, " micro-batches (gradient accumulation "
                        "keeps the effective batch at ", t_.batch_size, ")"));
        }
        allreduce_gradients();
        double global_loss = loss;
        g_.allreduce_sum(&global_loss, 1);
        if (loss_scale_ != 1.0) {  // fp16: unscale; skip the step and lower the scale on overflow
          bool overflow = false;
          for (auto& p : params_)
            if (p.grad().defined()) {
              p.mutable_grad().div_(loss_scale_);
              overflow |= !torch::isfinite(p.grad()).all().item<bool>();
            }
          if (g_.any(overflow)) {
            loss_scale_ /= 2;
            continue;
          }
        }
        if (first_loss_ == 0 && std::isfinite(global_loss)) first_loss_ = global_loss;
        if (!std::isfinite(global_loss) || global_loss > kDivergenceFactor * first_loss_) {
          r.status = Status::diverged;
          r.message = std::isfinite(global_loss)
                          ? cat("loss is ", num(global_loss, 4), " at epoch ", epoch, " step ", step, " (lr ",
                                num(lr, 3), "), over ", kDivergenceFactor, "x the first step's ", num(first_loss_, 4),
                                "; kept the last good epoch")
                          : cat("loss is ", global_loss, " at epoch ", epoch, " step ", step, " (lr ", num(lr, 3),
                                "); kept the last good epoch");
          finish_early(r);
          return;
        }
        opt_->step();
        loss_sum_ += global_loss;
        ++steps_;
        images_ += b->global_n;
        train_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        if (step_log_.is_open()) {
          step_log_ << epoch << "," << step << "," << num(lr, 17) << "," << num(global_loss, 17) << ",";
          for (size_t i = 0; i < b->samples.size(); ++i) step_log_ << (i ? ";" : "") << d_.samples[b->samples[i]].id;
          step_log_ << "\n";
        }
      }
      // Epoch end: buffers from rank 0, then validation and test.
      sync_buffers();
      const auto e0 = std::chrono::steady_clock::now();
      Eval val = evaluate(*val_loader_, epoch);
      Eval test;
      if (!val_is_test_) test = evaluate(*test_loader_, epoch);
      EpochRecord rec;
      rec.epoch = epoch;
      rec.lr = learning_rate(t_, epoch, 0, spe);
      rec.train_loss = steps_ > 0 ? loss_sum_ / steps_ : kNaN;
      rec.val_metric = val.metric;
      rec.val_loss = val.loss;
      rec.test_metric = val_is_test_ ? val.metric : test.metric;
      rec.train_seconds = train_seconds_;
      rec.eval_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - e0).count();
      rec.images_per_second = train_seconds_ > 0 ? images_ / train_seconds_ : 0;
#if defined(XFER_TORCH_CUDA)
      rec.peak_memory_bytes = cuda_ ? static_cast<int64_t>(c10::cuda::CUDACachingAllocator::getDeviceStats(device_.index())
                                                                .allocated_bytes[0].peak)
                                    : peak_rss_bytes();
#else
      rec.peak_memory_bytes = peak_rss_bytes();
#endif
      rec.note = val.note.empty() ? test.note : val.note;
      if (g_.rank() == 0) {
        const bool better = std::isfinite(val.metric) &&
                            (r.best_epoch < 0 || !std::isfinite(r.best_val) ||
                             (higher ? val.metric > r.best_val : val.metric < r.best_val));
        if (better) {
          r.best_epoch = epoch;
          r.best_val = val.metric;
          r.test_at_best = rec.test_metric;
          r.val = std::move(val.pred);
          r.test = std::move(test.pred);
          if (env_.keep_best_model) save_best();
        }
        r.epochs.push_back(rec);
        if (env_.on_epoch) env_.on_epoch(rec);
      } else {
        r.epochs.push_back(rec);
      }
      log::debug(cat("trial ", key_, " epoch ", epoch + 1, ": training ", num(rec.train_seconds, 3), " s, of which ",
                     num(wait_seconds_, 3), " s waiting for the loader; evaluation ", num(rec.eval_seconds, 3), " s"));
      loss_sum_ = 0, steps_ = 0, images_ = 0, train_seconds_ = 0, wait_seconds_ = 0;
      checkpoint(epoch + 1, 0);
      // Time limit: do not start an epoch that cannot finish before the deadline.
      const double epoch_seconds = rec.train_seconds + rec.eval_seconds;
      const bool out_of_time =
          env_.deadline && epoch + 1 < t_.epochs &&
          std::chrono::steady_clock::now() + std::chrono::duration<double>(1.1 * epoch_seconds) > *env_.deadline;
      if (g_.any(out_of_time)) {
        r.status = Status::interrupted;
        r.message = cat("time limit: stopped after epoch ", epoch, " (checkpointed)");
        return;
      }
    }
    if (r.status == Status::done && env_.remove_checkpoints) {
      await_checkpoint();
      remove_checkpoints(env_.checkpoint_dir, env_.keep_best_model);
    }
  }

  // A diverged or out-of-memory trial is over. Under the sweep its checkpoints stay until the result is recorded
  // (a job that dies in between finds them and recomputes at most one epoch, deterministically).
  void finish_early(Result&) {
    await_checkpoint();
    if (env_.remove_checkpoints) remove_checkpoints(env_.checkpoint_dir, env_.keep_best_model);
  }

  void save_best() {
    torch::serialize::OutputArchive a;
    for (const auto& [name, tensor] : model_->state()) a.write(name, tensor.to(torch::kCPU));
    std::filesystem::create_directories(env_.checkpoint_dir);
    const std::string path = env_.checkpoint_dir + "/best.pt";
    a.save_to(path + ".tmp");
    std::filesystem::rename(path + ".tmp", path);
  }

  const grid::TrialConfig& t_;
  const data::Dataset& d_;
  const Environment& env_;
  Group& g_;
  std::string key_;
  int threads_ = 1;
  torch::Device device_{torch::kCPU};
  bool cuda_ = false, amp_ = false;
  at::ScalarType amp_dtype_ = at::kBFloat16;
  double loss_scale_ = 1.0;
  double first_loss_ = 0;
  std::unique_ptr<model::Classifier> model_;
  std::vector<torch::Tensor> params_;
  std::unique_ptr<torch::optim::Optimizer> opt_;
  std::unique_ptr<data::Loader> train_loader_, val_loader_, test_loader_;
  bool val_is_test_ = false;
  int micro_ = 1;
  int start_epoch_ = 0;
  int64_t start_batch_ = 0;
  double loss_sum_ = 0, train_seconds_ = 0, wait_seconds_ = 0;
  size_t archive_bytes_hint_ = 0;
  std::future<void> pending_write_;
  int64_t steps_ = 0, images_ = 0;
  Result* result_ = nullptr;
  std::ofstream step_log_;
  std::mutex pinned_mu_;
  std::map<void*, torch::Tensor> pinned_;
};

}  // namespace

}  // namespace xfer::train

// The module's entry points, looked up by name with dlsym (train/trial.cpp): the xfer executable does not link
// LibTorch, so commands that do not train start in milliseconds instead of a second.
extern "C" __attribute__((visibility("default"))) void xfer_trainer_run(const xfer::grid::TrialConfig* t,
                                                                         const xfer::data::Dataset* d,
                                                                         const xfer::train::Environment* env,
                                                                         xfer::train::Result* out) {
  xfer::train::SoloGroup solo;
  xfer::train::Group& g = env->group ? *env->group : solo;
  {
    xfer::train::Trainer trainer(*t, *d, *env, g);
    *out = trainer.run();
  }
  // The trial's tensors are freed: give the heap kept by model::keep_host_memory back to the system, so a rank's
  // next trial (another model, other sizes) starts from a trimmed heap.
  xfer::model::release_host_memory();
}

extern "C" __attribute__((visibility("default"))) void xfer_trainer_backend(xfer::train::Backend* out) {
  out->torch_version = TORCH_VERSION;
  out->cuda_version = torch::cuda::is_available() ? "available" : "none";
  out->cudnn_version = torch::cuda::cudnn_is_available() ? "available" : "none";
  out->devices = torch::cuda::is_available() ? std::to_string(torch::cuda::device_count()) + " CUDA device(s)" : "cpu";
}
