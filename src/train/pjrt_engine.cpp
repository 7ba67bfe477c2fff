#include "pjrt_engine.hpp"

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>
#include <set>

#include <sys/resource.h>

#include <fmt/format.h>
#include <fmt/ranges.h>  // fmt::join (there from fmt 11 on, e.g. the fmt a CUDA LibTorch wheel ships)
#include <torch/torch.h>

#include "xfer/core/error.hpp"
#include "xfer/core/logline.hpp"
#include "xfer/data/numpy_random.hpp"
#include "xfer/model/classifier.hpp"
#include "xfer/pjrt/bundle.hpp"
#include "xfer/train/pjrt_checks.hpp"
#include "xfer/pjrt/runtime.hpp"

namespace xfer::train {

namespace {

// The process's peak resident memory (Linux reports ru_maxrss in KiB): the figure for plugins that report no device
// memory (the CPU plugin).
int64_t peak_rss_bytes() {
  struct rusage u {};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<int64_t>(u.ru_maxrss) * 1024;
}

constexpr char kStateMagic[] = "xfer-pjrt-state-1\n";
constexpr char kStepsRecord[] = "engine/steps_taken";

class PjrtEngine final : public Engine {
 public:
  explicit PjrtEngine(const EngineContext& c) : context_(c) {
    threads_ = c.env.threads > 0 ? c.env.threads : default_threads();
    plugin_ = pjrt_plugin_path(c.env.device);
    if (plugin_.empty())
      throw Error::input("--device " + c.env.device + ": no PJRT plugin (give pjrt:<plugin.so> or set XFER_PJRT_PLUGIN)");
    processes_ = c.group.size();
    if (processes_ == 1) {
      devices_ = local_ = pjrt_requested_devices();
      client_ = pjrt::Client::open(plugin_);
      first_device_ = devices_ == 1 ? c.env.local_rank % client_->device_count() : 0;
    } else {
      open_multi_process_client();
    }
    platform_ = client_->platform();
    if (c.trial.precision == Precision::fp16 || c.trial.precision == Precision::bf16)
      log::info("trial " + c.key + ": precision " + name_str(c.trial.precision) + " is not exported; the PJRT " +
                "programs train in fp32");
  }

  // A trial over several processes (ranks_per_trial > 1: a TPU pod slice's hosts, one process each) is one SPMD
  // program over every process's devices: one client spanning the processes, formed through the group's key-value
  // store; each process feeds its own devices its rank's share of every batch (JAX's multi-controller model).
  void open_multi_process_client() {
    const auto& c = context_;
    auto store = c.group.key_value_store();  // collective the first time: every member is here
    if (!store) throw Error("trial " + c.key + ": the rank group has no key-value store for a multi-process PJRT client");
    client_ = pjrt::Client::open(plugin_, {store, c.group.rank(), processes_});
    const int here = client_->device_count(), all = client_->global_device_count();
    if (all == here)
      throw Error::input(fmt::format(
          "trial {}: ranks_per_trial {} with PJRT plugin {}: its client has {} device(s), all in this process, so the "
          "plugin formed no client across the group's processes (CPU plugins cannot: they have no cross-process "
          "collectives; on a TPU pod slice libtpu forms one from the TPU VM's environment, one process per host without "
          "TPU_PROCESS_BOUNDS=1,1,1). Use ranks_per_trial = 1 with this plugin (data parallelism over a process's "
          "devices: XFER_PJRT_DEVICES)", c.key, processes_, plugin_, here));
    if (all != here * processes_)
      throw Error::input(fmt::format("trial {}: PJRT plugin {} lists {} devices in all and {} in this process, for a "
                                     "group of {} processes: give every process of the group the same number of chips",
                                     c.key, plugin_, all, here, processes_));
    devices_ = std::getenv("XFER_PJRT_DEVICES") ? pjrt_requested_devices() : all;
    if (devices_ != all)
      throw Error::input(fmt::format("trial {}: XFER_PJRT_DEVICES={} but the group's processes have {} devices in all; "
                                     "a multi-process program spans every one", c.key, devices_, all));
    local_ = here;
    first_device_ = 0;
  }

  void prepare() override {
    const auto& c = context_;
    const auto& t = c.trial;
    // The variant exported for the plugin's platform (a cuda variant sits beside the cpu,tpu one).
    auto request = pjrt_bundle_request(t, c.env.backbone, c.data, devices_);
    request.platform = platform_;
    bundle_ = pjrt::find_bundle(request);
    const auto& b = bundle_;
    platform_index_ = b.platform_position(platform_);

    // The initial weights: the LibTorch engine's (backbone file, head from the trial's seed, or --head-init).
    model_ = std::make_unique<model::Classifier>(c.env.backbone, t.input_size, c.data.num_classes(),
                                                 static_cast<uint64_t>(t.seed));
    if (!c.env.head_init.empty()) model_->load_head(c.env.head_init);
    if (model_->feature_dim() != b.feature_dim)
      throw Error::input(fmt::format("{}: exported for {} features, backbone {} gives {}", b.manifest, b.feature_dim,
                                     c.env.backbone, model_->feature_dim()));
    std::map<std::string, torch::Tensor> named;
    for (auto& [k, v] : model_->state()) named.emplace(k, v);
    // The manifest's params and buffers are the model's, shape for shape, before anything is allocated (the
    // optimizer's slots have their parameters' shapes: pjrt::Bundle::read checks).
    std::set<std::string> in_manifest;
    for (const auto& s : b.state) {
      if (s.role != "param" && s.role != "buffer") continue;
      in_manifest.insert(s.name);
      auto it = named.find(s.name);
      if (it == named.end())
        throw Error::input(fmt::format("{}: state {} is not in backbone {} (+ head)", b.manifest, s.name, c.env.backbone));
      if (std::vector<int64_t>(it->second.sizes().begin(), it->second.sizes().end()) != s.shape)
        throw Error::input(fmt::format("{}: state {} has shape [{}] in the manifest, [{}] in backbone {}", b.manifest,
                                       s.name, fmt::join(s.shape, ","), fmt::join(it->second.sizes(), ","), c.env.backbone));
    }
    for (const auto& [name, tensor] : named)
      if (!in_manifest.count(name) && name.find("num_batches_tracked") == std::string::npos)
        throw Error::input(fmt::format("{}: backbone {} (+ head) has state {}, which the manifest's state lacks; export "
                                       "the bundle again with tools/export_pjrt.py", b.manifest, c.env.backbone, name));
    host_.clear();
    for (const auto& s : b.state) {
      std::vector<float> values(static_cast<size_t>(s.elements()), 0.0f);
      if (s.role == "param" || s.role == "buffer") {
        auto v = named.at(s.name).detach().to(torch::kCPU, torch::kFloat).contiguous();
        std::memcpy(values.data(), v.data_ptr<float>(), values.size() * sizeof(float));
        if (s.role == "param") parameters_ += s.elements();
      }
      host_.push_back(std::move(values));
    }
    upload_state();
    eval_ = compile(b.eval);
  }

  std::string device() const override {
    if (processes_ > 1) return fmt::format("pjrt:{}:{}x{}", platform_, processes_, local_);  // processes × devices
    return fmt::format("pjrt:{}:{}{}", platform_, first_device_, devices_ > 1 ? fmt::format("+{}", devices_ - 1) : "");
  }
  int threads() const override { return threads_; }
  int64_t parameters() const override { return parameters_; }
  int feature_dim() const override { return bundle_.feature_dim; }
  bool scales_loss() const override { return false; }

  void begin_step(double learning_rate) override {
    lr_ = learning_rate;
    have_lr_ = true;
  }

  StepAttempt forward_backward(const data::Batch& batch, int micro_batches, double loss_scale) override {
    StepAttempt a;
    try {
      if (!have_lr_) throw Error("PJRT engine: the step's learning rate was not given (begin_step)");
      // The program's batch is the group's: this process holds its rank's share (data::shard_of), split over its
      // devices. Shares must be equal, and each a multiple of the devices.
      const int n = static_cast<int>(batch.n) * processes_;
      std::string problem;
      if (processes_ > 1 && batch.n * processes_ != batch.global_n)
        problem = fmt::format("trial {}: this process has {} of a batch of {} over {} processes; a multi-process PJRT "
                              "trial needs equal shares (batch_size and the epoch's last batch divisible by the "
                              "processes, every sample decodable)", context_.key, batch.n, batch.global_n, processes_);
      else if (batch.n % local_ != 0)
        problem = fmt::format("trial {}: a batch of {} does not split over {} devices; choose batch_size (and the "
                              "epoch's last batch) divisible by them", context_.key, batch.n, local_);
      else if (!bundle_.train_program(n))
        problem = fmt::format("{}: no train program for a batch of {} (an epoch's last batch); export it with --tail {}",
                              bundle_.manifest, n, n);
      // The program is collective across the processes: every one runs it, or none.
      agree(problem);
      auto it = train_.find(n);
      if (it == train_.end()) it = train_.emplace(n, compile(*bundle_.train_program(n))).first;
      const float lr = static_cast<float>(lr_), wd = static_cast<float>(context_.trial.optimizer_weight_decay());
      // Dropout's masks: a seed per step from the trial's seed and the steps taken (in the checkpointed state, so a
      // resumed trial draws the masks an uninterrupted one would), the same on every process.
      const int32_t seed = step_seed();
      const size_t ns = bundle_.state.size();
      const int pi = bundle_.train_program(n)->platform_index ? 1 : 0;
      std::vector<std::vector<pjrt::Buffer>> extra(static_cast<size_t>(local_));
      std::vector<std::vector<pjrt::Buffer*>> args(static_cast<size_t>(local_));
      for (int d = 0; d < local_; ++d) {
        auto& e = extra[static_cast<size_t>(d)];
        const int dev = first_device_ + d;
        const int64_t per = batch.n / local_, lo = per * d;
        const int64_t pixels = 3LL * batch.size * batch.size;
        if (pi) e.push_back(client_->upload(&platform_index_, pjrt::DType::s32, {}, dev));
        e.push_back(client_->upload(batch.data + lo * pixels, pjrt::DType::f32, {per, 3, batch.size, batch.size}, dev));
        if (bundle_.multilabel)
          e.push_back(client_->upload(batch.targets.data() + lo * bundle_.classes, pjrt::DType::f32,
                                      {per, bundle_.classes}, dev));
        else
          e.push_back(client_->upload(batch.labels.data() + lo, pjrt::DType::s32, {per}, dev));
        e.push_back(client_->upload(&lr, pjrt::DType::f32, {}, dev));
        e.push_back(client_->upload(&wd, pjrt::DType::f32, {}, dev));
        if (bundle_.random) e.push_back(client_->upload(&seed, pjrt::DType::s32, {}, dev));
        auto& list = args[static_cast<size_t>(d)];
        if (pi) list.push_back(&e[0]);
        for (auto& s : state_[static_cast<size_t>(d)]) list.push_back(&s);
        for (size_t k = static_cast<size_t>(pi); k < e.size(); ++k) list.push_back(&e[k]);
      }
      std::vector<bool> donated(static_cast<size_t>(pi) + ns + 4 + (bundle_.random ? 1 : 0), false);
      for (size_t k = 0; k < ns; ++k) donated[static_cast<size_t>(pi) + k] = true;
      auto out = it->second->execute(std::move(args), donated);
      for (int d = 0; d < local_; ++d) {
        auto& o = out[static_cast<size_t>(d)];
        if (o.size() != ns + 1) throw Error(fmt::format("{}: {} outputs, expected {}", bundle_.manifest, o.size(), ns + 1));
        auto& s = state_[static_cast<size_t>(d)];
        for (size_t k = 0; k < ns; ++k) s[k] = std::move(o[k]);
      }
      float loss = 0;
      out[0][ns].to_host(&loss, sizeof loss);
      // The program's loss is the group's mean, the same on every process; the loop sums the ranks' shares.
      a.loss = context_.group.rank() == 0 ? loss : 0.0;
      have_lr_ = false;
      stepped_lr_ = lr_;
      ++steps_taken_;
    } catch (const Error&) {
      throw;  // the bundle's fault (a program missing or corrupt): the same on every attempt, the loop classifies it
    } catch (const std::exception& e) {
      a.failure = e.what();
    }
    return a;
  }

  void exchange_gradients() override {}  // inside the SPMD program (XLA inserts the all-reduce)
  bool unscale_gradients(double) override { return true; }
  void apply_step(double learning_rate) override {
    // The update ran inside the train program at the rate begin_step gave.
    if (learning_rate != stepped_lr_)
      throw Error(fmt::format("PJRT engine: the step ran at lr {} but the loop applies {}", stepped_lr_, learning_rate));
  }
  void sync_buffers() override {}  // BatchNorm statistics come out of the program the same on every device

  SplitOutputs forward_split(data::BatchSource& loader) override {
    SplitOutputs out;
    const int B = bundle_.eval.batch, C = bundle_.classes;
    const int64_t pixels = 3LL * bundle_.input_size * bundle_.input_size;
    std::vector<float> x(static_cast<size_t>(B * pixels));
    std::vector<float> logits(static_cast<size_t>(B) * C);
    const double ls = bundle_.label_smoothing;
    // Each process evaluates its rank's share of every batch in rows [0, B / processes) of the program's batch; in a
    // multi-process client every process runs every batch, its share empty or not.
    const int rows = B / processes_;
    while (auto b = loader.next()) {
      if (b->n == 0 && processes_ == 1) continue;
      agree(b->n > rows ? fmt::format("{}: an evaluation batch share of {} > the exported {} / {} process(es)",
                                      bundle_.manifest, b->n, B, processes_)
                        : std::string());
      std::fill(x.begin(), x.end(), 0.0f);  // padding rows: eval mode treats every sample alone
      if (b->n > 0) std::memcpy(x.data(), b->data, static_cast<size_t>(b->n * pixels) * sizeof(float));
      const int pi = bundle_.eval.platform_index ? 1 : 0;
      std::vector<std::vector<pjrt::Buffer>> extra(static_cast<size_t>(local_));
      std::vector<std::vector<pjrt::Buffer*>> args(static_cast<size_t>(local_));
      const size_t nm = bundle_.model_state();
      const int64_t per = rows / local_;
      for (int d = 0; d < local_; ++d) {
        auto& e = extra[static_cast<size_t>(d)];
        const int dev = first_device_ + d;
        if (pi) e.push_back(client_->upload(&platform_index_, pjrt::DType::s32, {}, dev));
        e.push_back(client_->upload(x.data() + per * d * pixels, pjrt::DType::f32,
                                    {per, 3, bundle_.input_size, bundle_.input_size}, dev));
        auto& list = args[static_cast<size_t>(d)];
        if (pi) list.push_back(&e[0]);
        for (size_t k = 0; k < nm; ++k) list.push_back(&state_[static_cast<size_t>(d)][k]);
        list.push_back(&e.back());
      }
      auto res = eval_->execute(std::move(args), std::vector<bool>(static_cast<size_t>(pi) + nm + 1, false));
      for (int d = 0; d < local_; ++d)
        res[static_cast<size_t>(d)].at(0).to_host(logits.data() + per * d * C, static_cast<size_t>(per * C) * sizeof(float));
      for (int64_t i = 0; i < b->n; ++i) {
        const float* z = logits.data() + i * C;
        if (bundle_.multilabel) {
          // The LibTorch engine's criterion: binary cross-entropy with logits, the mean over classes; sigmoid scores.
          const float* y = b->targets.data() + i * C;
          double sum = 0;
          for (int k = 0; k < C; ++k) {
            const double v = z[k];
            sum += std::max(v, 0.0) - v * y[k] + std::log1p(std::exp(-std::abs(v)));
            out.scores.push_back(static_cast<float>(1.0 / (1.0 + std::exp(-v))));
          }
          out.loss_sum += sum / C;
          continue;
        }
        double mx = z[0];
        for (int k = 1; k < C; ++k) mx = std::max(mx, static_cast<double>(z[k]));
        double sum = 0;
        for (int k = 0; k < C; ++k) sum += std::exp(z[k] - mx);
        const double lse = mx + std::log(sum);
        const int y = b->labels[static_cast<size_t>(i)];
        double smooth = 0;
        for (int k = 0; k < C; ++k) smooth += lse - z[k];
        out.loss_sum += (1 - ls) * (lse - z[y]) + ls * smooth / C;
        for (int k = 0; k < C; ++k) out.scores.push_back(static_cast<float>(std::exp(z[k] - lse)));
      }
      out.count += b->n;
      out.samples.insert(out.samples.end(), b->samples.begin(), b->samples.end());
    }
    return out;
  }

  // The device state (parameters, BatchNorm statistics, optimizer state) as named float arrays.
  std::string save_state() override {
    download_state();
    std::string out(kStateMagic);
    for (size_t k = 0; k < bundle_.state.size(); ++k) {
      const auto& s = bundle_.state[k];
      const uint64_t bytes = host_[k].size() * sizeof(float);
      out += s.name;
      out.push_back('\0');
      out.append(reinterpret_cast<const char*>(&bytes), sizeof bytes);
      out.append(reinterpret_cast<const char*>(host_[k].data()), bytes);
    }
    out += kStepsRecord;
    out.push_back('\0');
    out.append(reinterpret_cast<const char*>(&steps_taken_), sizeof steps_taken_);
    return out;
  }

  void load_state(const std::string& bytes) override {
    const std::string magic(kStateMagic);
    if (bytes.compare(0, magic.size(), magic) != 0)
      throw Error("checkpoint: not a PJRT engine state (written by another engine?); remove it to start over");
    size_t pos = magic.size();
    for (size_t k = 0; k < bundle_.state.size(); ++k) {
      const auto& s = bundle_.state[k];
      const size_t end = bytes.find('\0', pos);
      uint64_t n = 0;
      if (end == std::string::npos || bytes.compare(pos, end - pos, s.name) != 0 || end + 1 + sizeof n > bytes.size())
        throw Error("checkpoint: PJRT state does not match " + bundle_.manifest + " at " + s.name);
      std::memcpy(&n, bytes.data() + end + 1, sizeof n);
      pos = end + 1 + sizeof n;
      if (n != host_[k].size() * sizeof(float) || pos + n > bytes.size())
        throw Error("checkpoint: PJRT state " + s.name + " has the wrong size");
      std::memcpy(host_[k].data(), bytes.data() + pos, n);
      pos += n;
    }
    steps_taken_ = 0;  // a state written before the count was kept: its bundles drew no random numbers
    const std::string record = std::string(kStepsRecord) + '\0';
    if (bytes.compare(pos, record.size(), record) == 0 && pos + record.size() + sizeof steps_taken_ <= bytes.size())
      std::memcpy(&steps_taken_, bytes.data() + pos + record.size(), sizeof steps_taken_);
    upload_state();
  }

  std::string random_state() override { return ""; }  // the exported steps draw no random numbers
  void restore_random_state(const std::string&) override {}

  void save_model(const std::string& path) override {
    download_state();
    std::map<std::string, const std::vector<float>*> by_name;
    for (size_t k = 0; k < bundle_.state.size(); ++k) by_name[bundle_.state[k].name] = &host_[k];
    torch::NoGradGuard ng;
    torch::serialize::OutputArchive a;
    for (const auto& [name, tensor] : model_->state()) {
      auto it = by_name.find(name);
      if (it != by_name.end())
        tensor.copy_(torch::from_blob(const_cast<float*>(it->second->data()), tensor.sizes(), torch::kFloat));
      a.write(name, tensor.to(torch::kCPU));
    }
    a.save_to(path);
  }

  // The devices' peak (HBM on a TPU) where the plugin reports it, else the process's peak resident memory.
  int64_t peak_memory_bytes() override {
    std::optional<int64_t> peak;
    for (int d = 0; d < local_; ++d)
      if (auto p = client_->peak_device_bytes(first_device_ + d)) peak = std::max(peak.value_or(0), *p);
    return peak.value_or(peak_rss_bytes());
  }

 private:
  // The stream xfer's own draws use (data::Rng), keyed by the trial's seed and the steps taken.
  int32_t step_seed() const {
    auto rng = data::Rng::derive(static_cast<uint64_t>(context_.trial.seed), static_cast<uint64_t>(steps_taken_),
                                 0xD509ULL);
    return static_cast<int32_t>(rng.next() & 0x7fffffff);
  }

  // Throws `problem` if it is not empty, on every process of a multi-process trial when any one has a problem: a
  // program spanning processes waits for all of them.
  void agree(const std::string& problem) {
    if (processes_ > 1 ? context_.group.any(!problem.empty()) : !problem.empty())
      throw Error::input(problem.empty() ? "trial " + context_.key + ": a peer process of the trial cannot run the step"
                                         : problem);
  }

  std::unique_ptr<pjrt::Executable> compile(const pjrt::Program& p) {
    return client_->compile(bundle_.code(p), p.file, devices_, first_device_);
  }

  void upload_state() {
    state_.clear();
    state_.resize(static_cast<size_t>(local_));
    for (int d = 0; d < local_; ++d)
      for (size_t k = 0; k < bundle_.state.size(); ++k)
        state_[static_cast<size_t>(d)].push_back(
            client_->upload(host_[k].data(), pjrt::DType::f32, bundle_.state[k].shape, first_device_ + d));
  }

  void download_state() {
    for (size_t k = 0; k < bundle_.state.size(); ++k)
      state_[0][k].to_host(host_[k].data(), host_[k].size() * sizeof(float));
  }

  const EngineContext context_;
  int threads_ = 1;
  std::string plugin_, platform_;
  int devices_ = 1, first_device_ = 0;  // the program's devices (every process's); the first local one
  int processes_ = 1, local_ = 1;         // the group's processes; this process's devices fed
  int32_t platform_index_ = 0;
  std::shared_ptr<pjrt::Client> client_;
  pjrt::Bundle bundle_;
  std::unique_ptr<model::Classifier> model_;
  std::vector<std::vector<float>> host_;                 // state on the host, in manifest order
  std::vector<std::vector<pjrt::Buffer>> state_;         // [device][state entry]
  std::map<int, std::unique_ptr<pjrt::Executable>> train_;  // by batch size
  std::unique_ptr<pjrt::Executable> eval_;
  int64_t parameters_ = 0;
  double lr_ = 0, stepped_lr_ = 0;
  int64_t steps_taken_ = 0;  // train programs run (checkpointed): dropout's seeds
  bool have_lr_ = false;
};

}  // namespace

std::unique_ptr<Engine> PjrtEngineFactory::make(const EngineContext& context) const {
  return std::make_unique<PjrtEngine>(context);
}

Fault PjrtEngineFactory::classify(const std::exception& e) const {
  const std::string m = e.what();
  // XLA's allocators say RESOURCE_EXHAUSTED when device memory runs out.
  return {m.find("RESOURCE_EXHAUSTED") != std::string::npos || m.find("out of memory") != std::string::npos, m};
}

}  // namespace xfer::train
