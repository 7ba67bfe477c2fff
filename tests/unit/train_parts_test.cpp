// The trainer's torch-free parts in-process: the learning-rate schedule against PyTorch's schedulers, the
// out-of-memory policy, the fp16 loss-scale rule against GradScaler's defaults, a split's evaluation over a rank
// group, the version texts, and the epoch loop driven through the engine interface by a scripted engine.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <utility>

#include <stdlib.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "support/kokkos_env.hpp"
#include "support/process.hpp"
#include "support/tempdir.hpp"
#include "xfer/core/error.hpp"
#include "xfer/train/engine.hpp"
#include "xfer/train/epoch_loop.hpp"
#include "xfer/train/evaluation.hpp"
#include "xfer/train/loss_scale.hpp"
#include "xfer/train/precision.hpp"
#include "xfer/train/oom_policy.hpp"
#include "xfer/train/schedule.hpp"

namespace xfer::test {
namespace {

using train::LearningRateSchedule;

// PyTorch's own schedulers, run once for the whole suite: lr per epoch (or per step) as JSON.
const nlohmann::json& torch_reference() {
  static const nlohmann::json j = [] {
    TempDir dir("lr_reference");
    const std::string script = dir.write("lr.py", R"(import inspect, json, sys, torch
def run(make, steps):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.1)
    s = make(opt)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]['lr'])
        opt.step(); s.step()
    return out
sig = inspect.signature(torch.cuda.amp.GradScaler.__init__).parameters
json.dump({
  'cosine': run(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=10), 10),
  'cosine_step': run(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=10 * 7), 10 * 7),
  'step': run(lambda o: torch.optim.lr_scheduler.MultiStepLR(o, milestones=[3, 6], gamma=0.1), 10),
  'scaler': {k: sig[k].default for k in ('init_scale', 'growth_factor', 'backoff_factor', 'growth_interval')},
}, open(sys.argv[1], 'w'))
)");
    const auto out = (dir / "lr.json").string();
    const auto r = run(std::string(XFER_PYTHON) + " " + quote(script) + " " + quote(out));
    EXPECT_EQ(r.status, 0) << r.err;
    return nlohmann::json::parse(read_file(out));
  }();
  return j;
}

LearningRateSchedule schedule(Schedule kind, int epochs, int warmup = 0) {
  LearningRateSchedule s;
  s.kind = kind;
  s.base = 0.1;
  s.epochs = epochs;
  s.warmup_epochs = warmup;
  s.milestones = {3, 6};
  s.gamma = 0.1;
  return s;
}

TEST(LearningRate, CosineStepsOncePerEpochAsCosineAnnealingLR) {
  const auto& ref = torch_reference()["cosine"];
  const auto s = schedule(Schedule::cosine, 10);
  for (int e = 0; e < 10; ++e)
    for (int64_t step : {0, 3, 6}) EXPECT_NEAR(train::learning_rate(s, e, step, 7), ref[e].get<double>(), 1e-12) << e;
  EXPECT_NEAR(train::learning_rate(s, 5, 0, 7), 0.05, 1e-15) << "half-way: half the base rate";
}

TEST(LearningRate, CosineStepFollowsCosineAnnealingLRStepPerStep) {
  const auto& ref = torch_reference()["cosine_step"];
  const auto s = schedule(Schedule::cosine_step, 10);
  for (int e = 0; e < 10; ++e)
    for (int64_t step = 0; step < 7; ++step)
      EXPECT_NEAR(train::learning_rate(s, e, step, 7), ref[e * 7 + step].get<double>(), 1e-10) << e << "/" << step;
}

TEST(LearningRate, StepDecaysAtEachMilestoneAsMultiStepLR) {
  const auto& ref = torch_reference()["step"];
  const auto s = schedule(Schedule::step, 10);
  for (int e = 0; e < 10; ++e) EXPECT_NEAR(train::learning_rate(s, e, 2, 5), ref[e].get<double>(), 1e-15) << e;
}

TEST(LearningRate, WarmupRisesLinearlyPerStepThenCosineStartsFromTheBase) {
  const auto s = schedule(Schedule::cosine, 12, 2);
  const int64_t spe = 5;
  for (int e = 0; e < 2; ++e)
    for (int64_t k = 0; k < spe; ++k)
      EXPECT_NEAR(train::learning_rate(s, e, k, spe), 0.1 * static_cast<double>(e * spe + k + 1) / (2.0 * spe), 1e-15);
  EXPECT_NEAR(train::learning_rate(s, 1, spe - 1, spe), 0.1, 1e-15) << "the warm-up ends at the base rate";
  // After the warm-up: CosineAnnealingLR over the remaining 10 epochs.
  const auto& ref = torch_reference()["cosine"];
  for (int e = 2; e < 12; ++e) EXPECT_NEAR(train::learning_rate(s, e, 0, spe), ref[e - 2].get<double>(), 1e-12) << e;
}

TEST(LearningRate, TakesTheTrialsSettings) {
  grid::TrialConfig t;
  t.lr = 0.3;
  t.epochs = 9;
  t.warmup_epochs = 1;
  t.step_milestones = {4};
  t.step_gamma = 0.5;
  t.schedule = Schedule::step;
  const auto s = LearningRateSchedule::of(t);
  EXPECT_EQ(s.kind, Schedule::step);
  EXPECT_DOUBLE_EQ(train::learning_rate(s, 3, 0, 1), 0.3);
  EXPECT_DOUBLE_EQ(train::learning_rate(s, 4, 0, 1), 0.15);
}

TEST(OomPolicy, NeverAMicroBatchOfOneSample) {
  EXPECT_EQ(train::effective_micro_batches(1, 64), 1);
  EXPECT_EQ(train::effective_micro_batches(8, 64), 8);
  EXPECT_EQ(train::effective_micro_batches(8, 9), 4);
  EXPECT_EQ(train::effective_micro_batches(4, 1), 1);
  EXPECT_EQ(train::effective_micro_batches(4, 0), 1);
}

TEST(OomPolicy, HalvesTheMicroBatchUntilItCannotThenGivesUp) {
  for (int64_t n = 1; n <= 130; ++n) {
    int micro = 1, retries = 0;
    while (true) {
      const auto d = train::after_out_of_memory(micro, n, true);
      if (!d.retry) {
        EXPECT_EQ(d.micro_batches, micro);
        break;
      }
      EXPECT_EQ(d.micro_batches, 2 * micro);
      EXPECT_GT(train::effective_micro_batches(d.micro_batches, n), train::effective_micro_batches(micro, n))
          << "a retry splits finer, shard " << n;
      micro = d.micro_batches;
      ASSERT_LT(++retries, 64);
    }
    // Gave up only where the next doubling splits no finer: micro-batches of two or three samples.
    EXPECT_EQ(train::effective_micro_batches(micro * 2, n), train::effective_micro_batches(micro, n)) << n;
  }
  EXPECT_FALSE(train::after_out_of_memory(1, 256, false).retry) << "retries turned off";
  EXPECT_TRUE(train::after_out_of_memory(64, 256, true).retry);
  EXPECT_FALSE(train::after_out_of_memory(128, 256, true).retry) << "128 micro-batches of 2 samples: the finest";
}

TEST(OomPolicy, AStepIsTriedWithTwiceTheMicroBatchesUntilItFitsEveryRankAgreeingAlike) {
  // Out of memory below 4 micro-batches on a 16-sample shard: 1, 2, then 4 fits.
  std::vector<int> tried, released;
  int agreements = 0, micro = 1;
  const auto any = [&](bool flag) { return ++agreements, flag; };
  const auto oom_below = [&](int enough) {
    return [&, enough](int m) { return tried.push_back(m), m < enough; };
  };
  EXPECT_TRUE(train::retry_out_of_memory(micro, 16, true, oom_below(4), any, [&](int m) { released.push_back(m); }));
  EXPECT_EQ(micro, 4);
  EXPECT_EQ(tried, (std::vector<int>{1, 2, 4}));
  EXPECT_EQ(released, (std::vector<int>{2, 4})) << "the cached memory released before each retry";
  EXPECT_EQ(agreements, 3 + 2) << "an out-of-memory flag per try, a give-up flag per out-of-memory";
  // A 4-sample shard splits at most in 2: it gives up there, the count that ran out of memory kept for the message.
  tried.clear(), micro = 1;
  EXPECT_FALSE(train::retry_out_of_memory(micro, 4, true, oom_below(1000), any, [](int) {}));
  EXPECT_EQ(tried, (std::vector<int>{1, 2}));
  EXPECT_EQ(micro, 2);
  // Retries off: one try.
  tried.clear(), micro = 1;
  EXPECT_FALSE(train::retry_out_of_memory(micro, 16, false, oom_below(4), any, [](int) {}));
  EXPECT_EQ(tried, (std::vector<int>{1}));
  // Another rank ran out of memory, this one did not: both retry.
  tried.clear(), micro = 1;
  bool peer_oom = true;
  EXPECT_TRUE(train::retry_out_of_memory(
      micro, 16, true, oom_below(0), [&](bool flag) { return flag || std::exchange(peer_oom, false); }, [](int) {}));
  EXPECT_EQ(tried, (std::vector<int>{1, 2}));
}

TEST(PrecisionPlan, MixedPrecisionOnCudaOnlyAndItsFastPathsWithIt) {
  // auto and bf16 on CUDA: bf16 autocast, no loss scale (bf16 has float32's range), TF32, cuDNN benchmark.
  for (Precision p : {Precision::auto_, Precision::bf16}) {
    const auto plan = train::plan_precision(p, true, true);
    EXPECT_TRUE(plan.autocast && plan.bf16 && !plan.loss_scaling && plan.tf32 && plan.cudnn_benchmark) << name(p);
    EXPECT_TRUE(plan.fused_optimizer && plan.note.empty()) << name(p);
  }
  const auto fp16 = train::plan_precision(Precision::fp16, true, false);
  EXPECT_TRUE(fp16.autocast && !fp16.bf16 && fp16.loss_scaling) << "fp16: autocast to half with GradScaler's rule";
  EXPECT_FALSE(fp16.fused_optimizer) << "no fused kernels in this LibTorch: torch::optim's step";
  const auto fp32 = train::plan_precision(Precision::fp32, true, true);
  EXPECT_FALSE(fp32.autocast || fp32.loss_scaling);
  EXPECT_FALSE(fp32.tf32) << "fp32 on CUDA means float32 matmuls and convolutions, not TF32 (gpu-review W6)";
  // On the CPU: float32 whatever was asked, none of the CUDA switches; a note when a GPU precision was asked for.
  for (Precision p : {Precision::auto_, Precision::fp32, Precision::bf16, Precision::fp16}) {
    const auto cpu = train::plan_precision(p, false, true);
    EXPECT_FALSE(cpu.autocast || cpu.loss_scaling || cpu.tf32 || cpu.cudnn_benchmark || cpu.fused_optimizer) << name(p);
    EXPECT_EQ(cpu.note.empty(), p == Precision::auto_ || p == Precision::fp32) << name(p);
  }
  EXPECT_EQ(train::plan_precision(Precision::fp16, false, false).note,
            "precision fp16 applies on CUDA; training in fp32 on the CPU");
}

TEST(LossScale, OffAppliesEveryStepAtScaleOne) {
  train::LossScale s;
  EXPECT_FALSE(s.enabled());
  EXPECT_TRUE(s.update(true));
  EXPECT_EQ(s.value(), 1.0);
  s.restore(8, 3);
  EXPECT_EQ(s.value(), 1.0);
}

TEST(LossScale, FollowsGradScalersDefaults) {
  const auto& d = torch_reference()["scaler"];
  EXPECT_EQ(train::LossScale::kInitial, d["init_scale"].get<double>());
  EXPECT_EQ(train::LossScale::kGrowth, d["growth_factor"].get<double>());
  EXPECT_EQ(train::LossScale::kBackoff, d["backoff_factor"].get<double>());
  EXPECT_EQ(train::LossScale::kGrowthInterval, d["growth_interval"].get<int64_t>());
}

TEST(LossScale, BacksOffAndSkipsOnOverflowGrowsAfterAnIntervalOfGoodSteps) {
  auto s = train::LossScale::fp16();
  EXPECT_TRUE(s.enabled());
  EXPECT_EQ(s.value(), 65536.0);
  EXPECT_FALSE(s.update(true)) << "an overflow skips the step";
  EXPECT_EQ(s.value(), 32768.0);
  for (int i = 0; i < 1999; ++i) ASSERT_TRUE(s.update(false));
  EXPECT_EQ(s.value(), 32768.0);
  EXPECT_EQ(s.good_steps(), 1999);
  EXPECT_TRUE(s.update(false));
  EXPECT_EQ(s.value(), 65536.0) << "2000 good steps in a row double it";
  EXPECT_EQ(s.good_steps(), 0);
  for (int i = 0; i < 1500; ++i) s.update(false);
  s.update(true);
  EXPECT_EQ(s.good_steps(), 0) << "an overflow restarts the count";
  for (int i = 0; i < 1999; ++i) s.update(false);
  EXPECT_EQ(s.value(), 32768.0);
  s.restore(1024, 1999);
  EXPECT_TRUE(s.update(false));
  EXPECT_EQ(s.value(), 2048.0) << "a restored count continues";
}

// Two ranks in one process: this one (rank 0) and a peer whose contributions are given.
class PeerGroup final : public train::SoloGroup {
 public:
  std::vector<double> peer_sums;
  std::vector<int64_t> peer_samples;
  std::vector<float> peer_scores;
  using train::SoloGroup::allreduce_sum;
  int size() const override { return 2; }
  void allreduce_sum(double* data, size_t n) override {
    for (size_t i = 0; i < n; ++i) data[i] += peer_sums.at(i);
  }
  std::vector<float> gather(const std::vector<float>& mine, int) override {
    auto all = mine;
    all.insert(all.end(), peer_scores.begin(), peer_scores.end());
    return all;
  }
  std::vector<int64_t> gather(const std::vector<int64_t>& mine, int) override {
    auto all = mine;
    all.insert(all.end(), peer_samples.begin(), peer_samples.end());
    return all;
  }
};

data::Dataset two_class_dataset(const std::vector<int32_t>& labels) {
  data::Dataset d;
  d.name = "two";
  d.class_names = {"a", "b"};
  for (size_t i = 0; i < labels.size(); ++i) {
    data::Sample s;
    s.id = "s" + std::to_string(i);
    s.label = labels[i];
    d.samples.push_back(s);
  }
  return d;
}

TEST(Evaluation, GathersTheGroupAndScoresOnRankZero) {
  const auto d = two_class_dataset({0, 1, 1, 0});
  train::SplitOutputs mine;
  mine.loss_sum = 1.5;
  mine.count = 2;
  mine.samples = {0, 1};
  mine.scores = {0.9f, 0.1f, 0.2f, 0.8f};  // both right
  PeerGroup g;
  g.peer_sums = {0.5, 2};
  g.peer_samples = {2, 3};
  g.peer_scores = {0.6f, 0.4f, 0.3f, 0.7f};  // both wrong
  const auto e = train::evaluate_split(mine, d, Metric::accuracy, g);
  EXPECT_DOUBLE_EQ(e.loss, 0.5) << "(1.5 + 0.5) / 4 samples";
  EXPECT_DOUBLE_EQ(e.metric, 0.5);
  EXPECT_EQ(e.pred.classes, 2);
  EXPECT_EQ(e.pred.samples, (std::vector<int64_t>{0, 1, 2, 3}));
  ASSERT_EQ(e.pred.scores.size(), 8u);
  EXPECT_FLOAT_EQ(e.pred.scores[4], 0.6f);
  EXPECT_TRUE(e.note.empty());

  const auto ll = train::evaluate_split(mine, d, Metric::log_loss, g);
  const double expected = -(std::log(0.9f) + std::log(0.8f) + std::log(0.4f) + std::log(0.3f)) / 4;
  EXPECT_NEAR(ll.metric, expected, 1e-6);
}

TEST(Evaluation, AnUndefinedMetricIsNaNWithItsReason) {
  const auto d = two_class_dataset({1, 1});
  train::SplitOutputs mine;
  mine.count = 2;
  mine.samples = {0, 1};
  mine.scores = {0.3f, 0.7f, 0.4f, 0.6f};
  train::SoloGroup g;
  const auto e = train::evaluate_split(mine, d, Metric::roc_auc, g);
  EXPECT_TRUE(std::isnan(e.metric));
  EXPECT_FALSE(e.note.empty()) << "one class present: ROC-AUC undefined";
  mine.scores[0] = std::nanf("");
  const auto nan = train::evaluate_split(mine, d, Metric::accuracy, g);
  EXPECT_TRUE(std::isnan(nan.metric));
  EXPECT_NE(nan.note.find("NaN"), std::string::npos) << nan.note;
}

TEST(BackendVersions, ReadAsTheLibrariesNumberThem) {
  EXPECT_EQ(train::cuda_version_text(12010), "12.1");
  EXPECT_EQ(train::cuda_version_text(11080), "11.8");
  EXPECT_EQ(train::cudnn_version_text(8902), "8.9.2");
  EXPECT_EQ(train::cudnn_version_text(8500), "8.5.0");
  EXPECT_EQ(train::cudnn_version_text(90100), "9.1.0");
}

TEST(BackendVersions, ProvenanceGivesVersionsNeverJustAvailable) {
  // The trainer module beside the xfer executable, loaded as `xfer run` loads it.
  const auto module = std::filesystem::path(XFER_BINARY).parent_path() / "libxfer_trainer.so";
  ASSERT_EQ(::setenv("XFER_TRAINER_MODULE", module.c_str(), 1), 0);
  const auto b = train::backend();
  EXPECT_FALSE(b.torch_version.empty());
  const std::regex version(R"(\d+\.\d+(\.\d+)?)");
  for (const auto& v : {b.cuda_version, b.cudnn_version}) {
    EXPECT_NE(v, "available");
    EXPECT_TRUE(std::regex_match(v, version) || v.rfind("none (", 0) == 0) << v;
  }
  if (!std::regex_match(b.cuda_version, version)) {  // a CPU-only LibTorch, as on this machine
    EXPECT_EQ(b.cuda_version, "none (CPU build)");
    EXPECT_EQ(b.cudnn_version, "none (CPU build)");
    EXPECT_EQ(b.devices, "cpu");
  }
}

TEST(Divergence, NonFiniteOrAThousandTimesTheFirstLoss) {
  EXPECT_TRUE(train::diverged(std::nan(""), 2.3));
  EXPECT_TRUE(train::diverged(INFINITY, 2.3));
  EXPECT_TRUE(train::diverged(2301, 2.3));
  EXPECT_FALSE(train::diverged(2299, 2.3));
}

// ---- the epoch loop through the engine interface ---------------------------------------------------------------

// 8 training and 4 validation images in memory (8×8 greyscale), two classes, a fixed split.
data::Dataset memory_dataset() {
  data::Dataset d;
  d.name = "mem";
  d.kind = "memory";
  d.class_names = {"a", "b"};
  d.validation = Validation::fixed;
  auto m = std::make_shared<data::MemoryImages>();
  m->n = 12;
  m->rows = m->cols = 8;
  m->pixels.assign(static_cast<size_t>(12 * 64), 0);
  for (int i = 0; i < 12; ++i) {
    std::fill_n(m->pixels.begin() + i * 64, 64, static_cast<uint8_t>(i * 20));
    data::Sample s;
    s.id = "m" + std::to_string(i);
    s.label = i % 2;
    s.memory_index = i;
    d.samples.push_back(s);
    d.split.push_back(i < 8 ? data::Split::train : i < 10 ? data::Split::val : data::Split::test);
  }
  d.memory = m;
  return d;
}

grid::TrialConfig memory_trial(int epochs, Metric metric = Metric::accuracy) {
  grid::TrialConfig t;
  t.model = "scripted";
  t.input_size = 8;
  t.mean = {0.5, 0.5, 0.5};
  t.std = {0.25, 0.25, 0.25};
  t.dataset = "mem";
  t.kind = "memory";
  t.metric = metric;
  t.flips = Flips::none;
  t.validation = Validation::fixed;
  t.optimizer = Optimizer::sgd;
  t.lr = 0.1;
  t.wd_mode = WdMode::plain;
  t.schedule = Schedule::cosine;
  t.augmentation = Augmentation::none;
  t.epochs = epochs;
  t.batch_size = 4;
  t.precision = Precision::fp32;
  return t;
}

// What the scripted engine does, and what it saw.
struct Script {
  std::vector<double> losses;            // per step (all epochs), default 1.0
  std::vector<double> p_correct;         // per evaluation epoch: the probability given to the true class
  int oom_below = 0;                     // out of memory while fewer micro-batches are asked for
  bool fp16 = false;
  std::vector<int> overflow_steps;       // steps (counted from 0) whose unscaled gradients overflow
  std::atomic<bool>* stop_after_steps = nullptr;
  int stop_at = -1;
  std::atomic<int64_t>* progress = nullptr;  // the trial's progress count (Environment::progress), read as it runs
  // Seen.
  std::vector<int64_t> progress_seen;     // the count at each forward/backward and each evaluation batch
  int prepared = 0, forward_calls = 0, steps = 0, evaluations = 0;
  std::vector<double> rates;
  std::vector<double> scales;
  std::string loaded;
};

class ScriptedEngine final : public train::Engine {
 public:
  ScriptedEngine(Script& s, const data::Dataset& d) : s_(s), d_(d) {}
  void prepare() override { ++s_.prepared; }
  std::string device() const override { return "scripted"; }
  int threads() const override { return 1; }
  int64_t parameters() const override { return 42; }
  int feature_dim() const override { return 7; }
  bool scales_loss() const override { return s_.fp16; }
  train::StepAttempt forward_backward(const data::Batch& b, int micro_batches, double loss_scale) override {
    ++s_.forward_calls;
    if (s_.progress) s_.progress_seen.push_back(s_.progress->load());
    s_.scales.push_back(loss_scale);
    train::StepAttempt a;
    if (micro_batches < s_.oom_below) {
      a.out_of_memory = true;
      return a;
    }
    const size_t k = static_cast<size_t>(attempted_++);
    a.loss = k < s_.losses.size() ? s_.losses[k] : 1.0;
    return a;
  }
  void exchange_gradients() override {}
  bool unscale_gradients(double) override {
    const int k = attempted_ - 1;
    return std::find(s_.overflow_steps.begin(), s_.overflow_steps.end(), k) == s_.overflow_steps.end();
  }
  void apply_step(double lr) override {
    s_.rates.push_back(lr);
    ++s_.steps;
    if (s_.stop_after_steps && s_.steps == s_.stop_at) *s_.stop_after_steps = true;
  }
  void sync_buffers() override {}
  train::SplitOutputs forward_split(data::BatchSource& loader) override {
    const size_t epoch = static_cast<size_t>(s_.evaluations++ / 2);  // validation then test, each epoch
    const double p = epoch < s_.p_correct.size() ? s_.p_correct[epoch] : 0.9;
    train::SplitOutputs o;
    while (auto b = loader.next()) {
      if (s_.progress) s_.progress_seen.push_back(s_.progress->load());
      for (int64_t i : b->samples) {
        const bool one = d_.samples[static_cast<size_t>(i)].label == 1;
        o.samples.push_back(i);
        o.scores.push_back(static_cast<float>(one ? 1 - p : p));
        o.scores.push_back(static_cast<float>(one ? p : 1 - p));
        o.loss_sum += 0.25;
        ++o.count;
      }
    }
    return o;
  }
  std::string save_state() override { return "state after " + std::to_string(s_.steps) + " steps"; }
  void load_state(const std::string& bytes) override { s_.loaded = bytes; }
  std::string random_state() override { return "rng"; }
  void restore_random_state(const std::string&) override {}
  void save_model(const std::string& path) override { std::ofstream(path) << "model"; }
  int64_t peak_memory_bytes() override { return 1234; }

 private:
  Script& s_;
  const data::Dataset& d_;
  int attempted_ = 0;  // forward/backward passes that ran (not out of memory)
};

class ScriptedFactory final : public train::EngineFactory {
 public:
  explicit ScriptedFactory(Script& s) : s_(s) {}
  std::unique_ptr<train::Engine> make(const train::EngineContext& c) const override {
    return std::make_unique<ScriptedEngine>(s_, c.data);
  }
  train::Fault classify(const std::exception& e) const override { return {false, e.what()}; }

 private:
  Script& s_;
};

class EpochLoop : public ::testing::Test {
 protected:
  train::Result run(const grid::TrialConfig& t, Script& s, train::Environment env = {}) {
    env.checkpoint_dir = (dir / "ckpt").string();
    env.threads = 1;
    env.loader_threads = 1;
    train::SoloGroup g;
    return train::run_epochs(t, d, env, g, ScriptedFactory(s));
  }
  TempDir dir{"epoch_loop"};
  data::Dataset d = memory_dataset();
};

TEST_F(EpochLoop, TrainsEveryStepAtTheSchedulesRateAndKeepsTheBestEpoch) {
  Script s;
  s.p_correct = {0.6, 0.9, 0.7};
  auto t = memory_trial(3, Metric::log_loss);
  std::vector<int> seen;
  train::Environment env;
  env.on_epoch = [&](const train::EpochRecord& r) { seen.push_back(r.epoch); };
  const auto r = run(t, s, env);
  ASSERT_EQ(r.status, train::Status::done) << r.message;
  EXPECT_EQ(s.steps, 6) << "8 samples in batches of 4, 3 epochs";
  const auto sched = LearningRateSchedule::of(t);
  ASSERT_EQ(s.rates.size(), 6u);
  for (int k = 0; k < 6; ++k) EXPECT_DOUBLE_EQ(s.rates[k], train::learning_rate(sched, k / 2, k % 2, 2)) << k;
  EXPECT_EQ(seen, (std::vector<int>{0, 1, 2}));
  ASSERT_EQ(r.epochs.size(), 3u);
  EXPECT_EQ(r.best_epoch, 1) << "log-loss: lower is better";
  EXPECT_NEAR(r.best_val, -std::log(0.9), 1e-6);
  EXPECT_NEAR(r.epochs[0].val_loss, 0.25, 1e-12);
  EXPECT_EQ(r.val.samples, (std::vector<int64_t>{8, 9}));
  EXPECT_EQ(r.test.samples, (std::vector<int64_t>{10, 11}));
  EXPECT_EQ(r.epochs[2].peak_memory_bytes, 1234);
  EXPECT_EQ(r.parameters, 42);
  EXPECT_EQ(r.device, "scripted");
  EXPECT_EQ(s.prepared, 1);
  EXPECT_FALSE(std::filesystem::exists(dir / "ckpt")) << "a finished trial removes its checkpoints";

  Script acc;
  acc.p_correct = {0.6, 0.9, 0.7};
  const auto a = run(memory_trial(3, Metric::accuracy), acc);
  EXPECT_EQ(a.best_epoch, 0) << "accuracy is 1 every epoch: a tie is not better";
}

// The sweep's heartbeat stops when this count stands still (sweep/heartbeat, gpu-review H4): every training step and
// every evaluation batch must move it, or a slow evaluation would pass for a hung group.
TEST_F(EpochLoop, EveryStepAndEveryEvaluationBatchMovesTheTrialsProgressCount) {
  Script s;
  std::atomic<int64_t> count{0};
  s.progress = &count;
  train::Environment env;
  env.progress = &count;
  const auto r = run(memory_trial(2), s, env);
  ASSERT_EQ(r.status, train::Status::done) << r.message;
  ASSERT_EQ(s.progress_seen.size(), 2u * (2 + 1 + 1)) << "2 epochs of 2 steps, a validation and a test batch each";
  for (size_t k = 1; k < s.progress_seen.size(); ++k)
    EXPECT_GT(s.progress_seen[k], s.progress_seen[k - 1]) << "the count stood still before event " << k;
  EXPECT_GT(count.load(), s.progress_seen.back());
}

TEST_F(EpochLoop, ALossAThousandTimesTheFirstEndsAsDiverged) {
  Script s;
  s.losses = {0.7, 0.7, 0.8, 701};
  const auto r = run(memory_trial(3), s);
  EXPECT_EQ(r.status, train::Status::diverged);
  EXPECT_NE(r.message.find("loss is 701 at epoch 1 step 1"), std::string::npos) << r.message;
  EXPECT_EQ(r.epochs.size(), 1u) << "the last good epoch is kept";
  EXPECT_EQ(s.steps, 3);
}

TEST_F(EpochLoop, AnOutOfMemoryRetriesWithMoreMicroBatchesOrEndsTheTrial) {
  Script s;
  s.oom_below = 2;
  train::Environment env;
  const auto r = run(memory_trial(1), s, env);
  EXPECT_EQ(r.status, train::Status::done) << r.message;
  EXPECT_EQ(r.micro_batches, 2);
  EXPECT_EQ(s.steps, 2);

  Script never;
  never.oom_below = 1000;
  const auto o = run(memory_trial(1), never);
  EXPECT_EQ(o.status, train::Status::oom);
  EXPECT_NE(o.message.find("out of memory at epoch 0 step 0 with 2 micro-batch(es) of the 4-sample batch"),
            std::string::npos) << o.message << " (a shard of 4 splits at most in 2)";

  Script off;
  off.oom_below = 2;
  env.oom_retry = false;
  EXPECT_EQ(run(memory_trial(1), off, env).status, train::Status::oom);
}

TEST_F(EpochLoop, Fp16SkipsTheStepsWhoseGradientsOverflowAndBacksOff) {
  Script s;
  s.fp16 = true;
  s.overflow_steps = {1};
  const auto r = run(memory_trial(2), s);
  ASSERT_EQ(r.status, train::Status::done) << r.message;
  EXPECT_EQ(s.steps, 3) << "4 batches, one skipped";
  EXPECT_EQ(s.scales, (std::vector<double>{65536, 65536, 32768, 32768}));
}

TEST_F(EpochLoop, AStopCheckpointsAtTheStepAndTheNextRunResumesThere) {
  std::atomic<bool> stop{false};
  Script s;
  s.stop_after_steps = &stop;
  s.stop_at = 3;
  train::Environment env;
  env.stop = &stop;
  const auto r = run(memory_trial(3), s, env);
  EXPECT_EQ(r.status, train::Status::interrupted);
  EXPECT_NE(r.message.find("stopped at epoch 1 batch 1"), std::string::npos) << r.message;
  stop = false;
  Script again;
  const auto resumed = run(memory_trial(3), again, env);
  ASSERT_EQ(resumed.status, train::Status::done) << resumed.message;
  EXPECT_EQ(resumed.resumed_from_epoch, 1);
  EXPECT_EQ(again.loaded, "state after 3 steps");
  EXPECT_EQ(again.steps, 3) << "the rest of epoch 1, then epoch 2";
  EXPECT_EQ(resumed.epochs.size(), 3u);
}

TEST_F(EpochLoop, ADeadlineStopsBeforeAnEpochThatCannotFinish) {
  Script s;
  train::Environment env;
  env.deadline = std::chrono::steady_clock::now();
  const auto r = run(memory_trial(3), s, env);
  EXPECT_EQ(r.status, train::Status::interrupted);
  EXPECT_NE(r.message.find("time limit: stopped after epoch 0"), std::string::npos) << r.message;
  EXPECT_EQ(r.epochs.size(), 1u);
  EXPECT_TRUE(std::filesystem::exists(dir / "ckpt")) << "checkpointed for the next job";
}


}  // namespace
}  // namespace xfer::test
