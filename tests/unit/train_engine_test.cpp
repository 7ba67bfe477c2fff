// The LibTorch engine's parts in-process: the criterion against its closed form, the step over micro-batches
// against one pass over the whole shard, loss scaling through backward, the gradient exchange over a group, and the
// engine itself — its set-up messages, its reading of torch's errors, its state round trip.
// The backbone is a TorchScript module made here (flatten: no BatchNorm, so micro-batches change nothing).
#include <array>
#include <cmath>
#include <fstream>
#include <regex>
#include <condition_variable>
#include <future>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

#include <ATen/autocast_mode.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/utils/lambda_post_hook.h>
#include <torch/script.h>
#include <torch/torch.h>

#include "capped_cpu_allocator.hpp"
#include "gradient_exchange.hpp"
#include "step.hpp"
#include "torch_engine.hpp"
#include "support/log_capture.hpp"
#include "support/tempdir.hpp"
#include "xfer/core/error.hpp"
#include "xfer/model/classifier.hpp"

namespace xfer::test {
namespace {

constexpr int kSize = 4, kClasses = 3, kN = 6;

std::string flatten_backbone(const TempDir& dir) {
  torch::jit::Module m("Flatten");
  m.define(R"(
def forward(self, x):
    return x.flatten(1)
)");
  const std::string path = (dir / "flatten.pt").string();
  m.save(path);
  return path;
}

struct Shard {
  data::Batch batch;
  std::vector<float> pixels;
  torch::Tensor x;
};

Shard shard(bool multilabel) {
  Shard s;
  torch::manual_seed(7);
  auto x = torch::randn({kN, 3, kSize, kSize});
  s.pixels.assign(x.data_ptr<float>(), x.data_ptr<float>() + x.numel());
  s.batch.n = kN;
  s.batch.global_n = 2 * kN;  // as if a peer held the other half
  s.batch.size = kSize;
  s.batch.data = s.pixels.data();
  for (int i = 0; i < kN; ++i) {
    s.batch.labels.push_back(i % kClasses);
    for (int k = 0; k < kClasses; ++k) s.batch.targets.push_back(multilabel && (i + k) % 2 ? 1.f : 0.f);
    s.batch.samples.push_back(i);
  }
  s.x = torch::from_blob(s.pixels.data(), {kN, 3, kSize, kSize}, torch::kFloat);
  return s;
}

std::vector<torch::Tensor> gradients(model::Classifier& m) {
  std::vector<torch::Tensor> out;
  for (auto& p : m.parameters()) out.push_back(p.grad().clone());
  return out;
}

void zero(model::Classifier& m) {
  for (auto& p : m.parameters())
    if (p.grad().defined()) p.mutable_grad().zero_();
}

TEST(Criterion, CrossEntropyWithSmoothingAndBinaryCrossEntropyPerClass) {
  const auto s = shard(true);
  torch::manual_seed(3);
  const auto logits = torch::randn({kN, kClasses});
  train::Criterion c;
  c.classes = kClasses;
  c.label_smoothing = 0.1;
  double expected = 0;
  const auto logp = torch::log_softmax(logits, 1);
  for (int i = 0; i < kN; ++i)
    for (int k = 0; k < kClasses; ++k) {
      const double q = (k == s.batch.labels[i] ? 0.9 : 0.0) + 0.1 / kClasses;
      expected -= q * logp[i][k].item<double>();
    }
  EXPECT_NEAR(train::criterion_sum(c, logits, train::batch_targets(c, s.batch)).item<double>(), expected, 1e-5);
  // Samples [2, 5) alone.
  double part = 0;
  for (int i = 2; i < 5; ++i)
    for (int k = 0; k < kClasses; ++k)
      part -= ((k == s.batch.labels[i] ? 0.9 : 0.0) + 0.1 / kClasses) * logp[i][k].item<double>();
  EXPECT_NEAR(train::criterion_sum(c, logits.slice(0, 2, 5), train::batch_targets(c, s.batch).slice(0, 2, 5)).item<double>(), part, 1e-5);

  c.multilabel = true;
  double bce = 0;
  for (int i = 0; i < kN; ++i)
    for (int k = 0; k < kClasses; ++k) {
      const double z = logits[i][k].item<double>(), y = s.batch.targets[i * kClasses + k];
      const double p = 1 / (1 + std::exp(-z));
      bce -= y * std::log(p) + (1 - y) * std::log(1 - p);
    }
  EXPECT_NEAR(train::criterion_sum(c, logits, train::batch_targets(c, s.batch)).item<double>(), bce / kClasses, 1e-5);
}

TEST(Step, MicroBatchesAccumulateTheSameLossAndGradientsAsOnePass) {
  TempDir dir("step");
  model::Classifier m(flatten_backbone(dir), kSize, kClasses, 5);
  m.train(true);
  const auto s = shard(false);
  train::StepSettings st;
  st.criterion.classes = kClasses;
  const double one = train::forward_backward(m, s.batch, s.x, st).value();
  const auto whole = gradients(m);
  for (int micro : {2, 3, 8}) {
    zero(m);
    st.micro_batches = micro;
    EXPECT_NEAR(train::forward_backward(m, s.batch, s.x, st).value(), one, 1e-6) << micro;
    const auto parts = gradients(m);
    for (size_t i = 0; i < whole.size(); ++i) EXPECT_TRUE(torch::allclose(parts[i], whole[i], 1e-5, 1e-7)) << micro;
  }
  // The loss is the shard's sum over the global batch: the mean over the shard, halved.
  train::Criterion c;
  c.classes = kClasses;
  torch::NoGradGuard ng;
  const double mean = train::criterion_sum(c, m.forward(s.x), train::batch_targets(c, s.batch)).item<double>() / kN;
  EXPECT_NEAR(one, mean / 2, 1e-6);
}

TEST(Step, TheLossScaleMultipliesTheGradients) {
  TempDir dir("scale");
  model::Classifier m(flatten_backbone(dir), kSize, kClasses, 5);
  const auto s = shard(false);
  train::StepSettings st;
  st.criterion.classes = kClasses;
  const double plain = train::forward_backward(m, s.batch, s.x, st).value();
  const auto g1 = gradients(m);
  zero(m);
  st.loss_scale = 1024;
  EXPECT_NEAR(train::forward_backward(m, s.batch, s.x, st).value(), plain, 1e-9) << "the reported loss is unscaled";
  const auto g2 = gradients(m);
  for (size_t i = 0; i < g1.size(); ++i) EXPECT_TRUE(torch::allclose(g2[i], g1[i] * 1024, 1e-5, 1e-5));
}

TEST(Step, AForwardPassThatThrowsLeavesAutocastOff) {
  // Autocast is thread-local: an exception in the forward pass (a CUDA out-of-memory, which the OOM policy catches
  // and retries) must not leave it on for the retry, the next trial on this thread or its evaluation.
  TempDir dir("autocast");
  model::Classifier m(flatten_backbone(dir), kSize, kClasses, 5);
  const auto s = shard(false);
  train::StepSettings st;
  st.criterion.classes = kClasses;
  st.autocast = true;
  ASSERT_FALSE(model::autocast_on());
  const auto wrong = torch::zeros({kN, 3, kSize + 1, kSize + 1});  // the head's input size does not match
  EXPECT_ANY_THROW(train::forward_backward(m, s.batch, wrong, st));
  EXPECT_FALSE(model::autocast_on()) << "autocast left on after the exception";
  train::AutocastScope scope(false, at::kBFloat16);
  EXPECT_FALSE(model::autocast_on()) << "a scope that is off changes nothing";
}

// CUDA's out-of-memory in a TorchScript backbone's forward pass (where most activations are allocated) reaches C++
// as the interpreter's std::runtime_error ("The following operation failed in the TorchScript interpreter. ...
// out of memory"), not as c10::OutOfMemoryError: it must still be read as an out-of-memory, retried with more
// micro-batches, not fail the trial. Injected here through LibTorch's CPU allocator.
TEST(Step, AnOutOfMemoryInsideTheTorchScriptBackboneIsRetriedAsOne) {
  TempDir dir("oom");
  torch::jit::Module doubling("Doubling");
  doubling.define(R"(
def forward(self, x):
    return x.flatten(1) * 2.0
)");
  const std::string path = (dir / "doubling.pt").string();
  doubling.save(path);
  model::Classifier m(path, kSize, kClasses, 5);
  const auto s = shard(false);
  train::StepSettings st;
  st.criterion.classes = kClasses;
  st.autocast = true;
  const size_t features = sizeof(float) * kN * 3 * kSize * kSize;  // what the backbone allocates for the whole shard
  std::exception_ptr caught;
  {
    gpu_check::CpuMemoryCap cap(features * 3 / 4);
    ASSERT_TRUE(cap.installed());
    try {
      train::forward_backward(m, s.batch, s.x, st);
    } catch (...) {
      caught = std::current_exception();
    }
  }
  ASSERT_TRUE(caught) << "the cap was not reached";
  try {
    std::rethrow_exception(caught);
  } catch (const std::exception& e) {
    const auto fault = train::TorchEngineFactory().classify(e);
    EXPECT_TRUE(fault.out_of_memory) << fault.message;
    EXPECT_NE(fault.message.find("out of memory (injected)"), std::string::npos) << fault.message;
  }
  EXPECT_FALSE(model::autocast_on());
  // Two micro-batches of half the shard fit under the same cap: what the retry asks for.
  gpu_check::CpuMemoryCap cap(features * 3 / 4);
  st.micro_batches = 2;
  EXPECT_NO_THROW(train::forward_backward(m, s.batch, s.x, st));
}

// Host synchronisations in `code`, one message per line: reading a device value (.item, a copy to the CPU), a
// blocking copy to the device (a .to(device) without non_blocking), an explicit synchronize. A line that says
// "sync-ok:" (and why) is allowed.
std::vector<std::string> host_syncs(const std::string& code, const std::string& where) {
  static const std::regex sync(R"(\.item\s*[<(]|kCPU|\.cpu\(\)|synchronize\(|\.to\(\s*[\w.]*device\w*\s*\))");
  std::vector<std::string> found;
  std::istringstream in(code);
  std::string line;
  for (int n = 1; std::getline(in, line); ++n)
    if (std::regex_search(line, sync) && line.find("sync-ok:") == std::string::npos)
      found.push_back(where + " line " + std::to_string(n) + ": " + line);
  return found;
}

std::string read_source(const std::string& path) {
  std::ifstream in(std::string(XFER_SOURCE_DIR) + "/" + path);
  EXPECT_TRUE(in) << path;
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// The body of the function whose definition starts with `signature` in `code`.
std::string function_body(const std::string& code, const std::string& signature) {
  const auto at = code.find(signature);
  EXPECT_NE(at, std::string::npos) << signature;
  if (at == std::string::npos) return "";
  size_t i = code.find('{', at), depth = 0;
  const size_t open = i;
  for (; i < code.size(); ++i) {
    if (code[i] == '{') ++depth;
    if (code[i] == '}' && --depth == 0) break;
  }
  return code.substr(open, i - open + 1);
}

TEST(Step, NoHostSynchronisationComesBackIntoTheTrainingStep) {
  // Each one stalls the GPU while the host launches the rest of the step, and the per-step syncs once hid a race on
  // the loader's pinned slots (gpu-review S1, W1).
  EXPECT_EQ(host_syncs("    loss_value += loss.item<double>();\n    .to(torch::kLong).to(c.device);\n", "old step").size(), 2u)
      << "the guard finds what the step did before";
  std::vector<std::string> found = host_syncs(read_source("src/train/step.cpp"), "step.cpp");
  const std::string engine = read_source("src/train/torch_engine.cpp");
  for (const char* f : {"StepAttempt forward_backward(", "torch::Tensor images(", "void exchange_gradients()"})
    for (auto& s : host_syncs(function_body(engine, f), std::string("torch_engine.cpp ") + f)) found.push_back(s);
  for (const auto& s : found) ADD_FAILURE() << "a host synchronisation in the training step: " << s;
}

// A group of two whose peer holds the same gradients, and reports what it was given.
class TwinGroup final : public train::SoloGroup {
 public:
  size_t reduced = 0;
  using train::SoloGroup::allreduce_sum;
  int size() const override { return 2; }
  void allreduce_sum(float* data, size_t n) override {
    reduced += n;
    for (size_t i = 0; i < n; ++i) data[i] *= 2;
  }
};

TEST(GradientExchange, SumsEveryGradientInOneBucketAndLeavesOneNoRankHasUndefined) {
  auto a = torch::ones({2, 3}, torch::requires_grad());
  auto b = torch::ones({4}, torch::requires_grad());
  (a * torch::arange(6).reshape({2, 3})).sum().backward();
  std::vector<torch::Tensor> params{a, b};
  TwinGroup g;
  train::GroupGradientExchange exchange(params, g, torch::kCPU);
  exchange.finish();
  EXPECT_EQ(g.reduced, 12u) << "one all-reduce over all 10 values and a flag per parameter";
  EXPECT_TRUE(torch::equal(a.grad(), 2 * torch::arange(6).reshape({2, 3}).to(torch::kFloat)));
  EXPECT_FALSE(b.grad().defined()) << "no rank has a gradient for it: none, as on one rank";

  train::SoloGroup solo;
  train::GroupGradientExchange alone(params, solo, torch::kCPU);
  const auto before = a.grad().clone();
  alone.finish();
  EXPECT_TRUE(torch::equal(a.grad(), before)) << "a group of one leaves the gradients";
}

TEST(GradientExchange, BucketsAreDdpsReverseOrderFirstSmallThenCapped) {
  // Parameters of 400, 400, 400, 4000, 100, 100 bytes; first bucket closes at >= 150 bytes, the others at >= 800.
  const auto b = train::assign_buckets({400, 400, 400, 4000, 100, 100}, 150, 800);
  ASSERT_EQ(b.size(), 4u);
  EXPECT_EQ(b[0], (std::vector<size_t>{5, 4}));     // 200 bytes: the first (small) bucket, the last parameters
  EXPECT_EQ(b[1], (std::vector<size_t>{3}));        // 4000: one parameter alone over the cap
  EXPECT_EQ(b[2], (std::vector<size_t>{2, 1}));     // 800
  EXPECT_EQ(b[3], (std::vector<size_t>{0}));        // what is left
  EXPECT_EQ(train::assign_buckets({4, 4}, int64_t(1) << 20, int64_t(25) << 20).size(), 1u);
}

// Two ranks as two threads of this process: sums meet in a rendezvous (both threads add rank 0's values to rank 1's,
// so both get the same bits, as MPI_Allreduce gives); started sums are done in wait_all, in the order they were
// started, and their buffers are left alone until then — MPI_Iallreduce's contract.
class ThreadPair {
 public:
  void meet() {
    std::unique_lock<std::mutex> lock(mu_);
    const int64_t gen = generation_;
    if (++arrived_ == 2) {
      arrived_ = 0;
      ++generation_;
      cv_.notify_all();
    } else {
      cv_.wait(lock, [&] { return generation_ != gen; });
    }
  }
  void sum(int rank, float* data, size_t n) {
    slot_[rank] = data;
    count_[rank] = n;
    meet();
    if (count_[0] != count_[1]) throw std::runtime_error("mismatched sums");
    std::vector<float> s(n);
    for (size_t i = 0; i < n; ++i) s[i] = slot_[0][i] + slot_[1][i];
    meet();
    std::copy(s.begin(), s.end(), data);
    meet();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int arrived_ = 0;
  int64_t generation_ = 0;
  float* slot_[2] = {nullptr, nullptr};
  size_t count_[2] = {0, 0};
};

class ThreadGroup final : public train::SoloGroup {
 public:
  ThreadGroup(ThreadPair& pair, int rank) : pair_(pair), rank_(rank) {}
  using train::SoloGroup::allreduce_sum;
  int rank() const override { return rank_; }
  int size() const override { return 2; }
  void allreduce_sum(float* data, size_t n) override { pair_.sum(rank_, data, n); }
  void start_allreduce_sum(float* data, size_t n) override { started_.emplace_back(data, n); }
  bool any(bool flag) override {
    float f = flag ? 1.0f : 0.0f;
    pair_.sum(rank_, &f, 1);
    return f > 0;
  }
  void wait_all() override {
    for (auto& [d, n] : started_) pair_.sum(rank_, d, n);
    sums += started_.size();
    started_.clear();
  }
  size_t sums = 0;

 private:
  ThreadPair& pair_;
  int rank_;
  std::vector<std::pair<float*, size_t>> started_;
};

// A small conv net (channels-last weights, as the trainer has them) and its loss on one half of a batch.
torch::nn::Sequential small_net() {
  torch::manual_seed(11);
  torch::nn::Sequential net(torch::nn::Conv2d(torch::nn::Conv2dOptions(3, 4, 3)), torch::nn::ReLU(),
                            torch::nn::Conv2d(torch::nn::Conv2dOptions(4, 6, 3)), torch::nn::Flatten(),
                            torch::nn::Linear(6 * 4 * 4, 5));
  for (auto& p : net->parameters())
    if (p.dim() == 4) p.set_data(p.data().contiguous(at::MemoryFormat::ChannelsLast));
  return net;
}

struct TwoHalves {
  torch::Tensor x, y;
  TwoHalves() {
    torch::manual_seed(12);
    x = torch::randn({8, 3, 8, 8}).contiguous(at::MemoryFormat::ChannelsLast);
    y = torch::randint(0, 5, {8}, torch::kLong);
  }
  // The global batch's mean loss, this rank's part: micro-batch k of `parts` on rank r of 2.
  torch::Tensor loss(torch::nn::Sequential& net, int rank, int part, int parts) const {
    const int64_t per = 4 / parts, lo = rank * 4 + part * per;
    return torch::nn::functional::cross_entropy(net->forward(x.slice(0, lo, lo + per)), y.slice(0, lo, lo + per),
                                                torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum)) /
           8.0;
  }
};

enum class Kind { flat, bucketed, overlap };

// One step's gradients on each of two ranks, summed by the chosen exchange; rank 1 first abandons an attempt when
// `abandon` (an out-of-memory before its backward, while rank 0's hooks already started sums).
std::array<std::vector<torch::Tensor>, 2> two_rank_gradients(Kind kind, bool abandon, std::array<int64_t, 2>* in_backward = nullptr) {
  const TwoHalves data;
  ThreadPair pair;
  std::array<std::vector<torch::Tensor>, 2> out;
  std::array<torch::nn::Sequential, 2> nets{small_net(), small_net()};
  auto rank_main = [&](int rank) {
    torch::set_num_threads(1);
    ThreadGroup group(pair, rank);
    auto& net = nets[rank];
    auto params = net->parameters();
    std::unique_ptr<train::GradientExchange> ex;
    if (kind == Kind::flat) {
      ex = std::make_unique<train::GroupGradientExchange>(params, group, torch::kCPU);
    } else {
      train::BucketOptions o;
      o.first_bytes = 64;  // several small buckets out of a small net
      o.cap_bytes = 512;
      o.overlap = kind == Kind::overlap;
      ex = std::make_unique<train::BucketedGradientExchange>(params, train::group_reducer(group, torch::kCPU), o);
    }
    if (abandon) {
      ex->zero_gradients();
      if (rank == 0) {
        ex->before_backward(true);
        data.loss(net, rank, 0, 1).backward();
      }
    }
    ex->zero_gradients();
    for (int part = 0; part < 2; ++part) {  // two micro-batches: only the second backward may start sums
      ex->before_backward(part == 1);
      data.loss(net, rank, part, 2).backward();
    }
    if (in_backward)
      if (auto* b = dynamic_cast<train::BucketedGradientExchange*>(ex.get())) (*in_backward)[rank] = b->sums_started_during_backward();
    ex->finish();
    for (auto& p : params) out[rank].push_back(p.grad().clone());
    if (auto* b = dynamic_cast<train::BucketedGradientExchange*>(ex.get())) {
      // The gradients are views into the buckets, with the parameters' own strides.
      for (auto& p : params) EXPECT_EQ(p.grad().strides(), p.strides());
      EXPECT_GT(b->buckets(), 2u);
    }
  };
  std::thread peer(rank_main, 1);
  rank_main(0);
  peer.join();
  return out;
}

TEST(GradientExchange, BucketedAndOverlappedSumsEqualTheFlatExchangeBitForBitAndOneRankWithTheWholeBatch) {
  const auto flat = two_rank_gradients(Kind::flat, false);
  std::array<int64_t, 2> during{-1, -1};
  const auto overlapped = two_rank_gradients(Kind::overlap, false, &during);
  const auto bucketed = two_rank_gradients(Kind::bucketed, false);
  // One rank, the whole batch in one backward.
  const TwoHalves data;
  auto net = small_net();
  (data.loss(net, 0, 0, 1) + data.loss(net, 1, 0, 1)).backward();
  const auto params = net->parameters();
  ASSERT_EQ(flat[0].size(), params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    for (int r = 0; r < 2; ++r) {
      EXPECT_TRUE(torch::equal(overlapped[r][i], flat[r][i])) << "parameter " << i << " rank " << r;
      EXPECT_TRUE(torch::equal(bucketed[r][i], flat[r][i])) << "parameter " << i << " rank " << r;
    }
    EXPECT_TRUE(torch::allclose(flat[0][i], params[i].grad(), 1e-5, 1e-7)) << "parameter " << i;
  }
  EXPECT_GT(during[0], 0) << "hooks started sums during the last micro-batch's backward";
  EXPECT_GT(during[1], 0);
}

TEST(GradientExchange, AParameterNoRankHasUsedKeepsNoGradientSoTheOptimizerLeavesItAsOnOneRank) {
  // A branch the forward pass never reaches (a backbone's unused head): on one rank its gradient stays undefined and
  // AdamW skips it; N ranks must not give it a zero gradient that decays it and moves its moments.
  for (Kind kind : {Kind::flat, Kind::bucketed, Kind::overlap}) {
    const TwoHalves data;
    ThreadPair pair;
    std::array<torch::nn::Sequential, 2> nets{small_net(), small_net()};
    std::array<torch::nn::Linear, 2> unused{torch::nn::Linear(3, 2), torch::nn::Linear(3, 2)};
    const auto before = unused[0]->weight.clone();
    unused[1]->weight.set_data(before.clone());
    auto rank_main = [&](int rank) {
      torch::set_num_threads(1);
      ThreadGroup group(pair, rank);
      auto params = nets[rank]->parameters();
      for (auto& p : unused[rank]->parameters()) params.push_back(p);
      std::unique_ptr<train::GradientExchange> ex;
      if (kind == Kind::flat) ex = std::make_unique<train::GroupGradientExchange>(params, group, torch::kCPU);
      else {
        train::BucketOptions o;
        o.first_bytes = 64;
        o.cap_bytes = 512;
        o.overlap = kind == Kind::overlap;
        ex = std::make_unique<train::BucketedGradientExchange>(params, train::group_reducer(group, torch::kCPU), o, &group);
      }
      torch::optim::AdamW opt(params, torch::optim::AdamWOptions(0.1).weight_decay(0.5));
      for (int step = 0; step < 2; ++step) {
        ex->zero_gradients();
        ex->before_backward(true);
        data.loss(nets[rank], rank, 0, 1).backward();
        ex->finish();
        opt.step();
      }
      EXPECT_FALSE(unused[rank]->weight.grad().defined()) << "rank " << rank;
      EXPECT_TRUE(torch::equal(unused[rank]->weight, before)) << "rank " << rank << ": the optimizer moved it";
      EXPECT_TRUE(nets[rank]->parameters()[0].grad().defined());
    };
    std::thread peer(rank_main, 1);
    rank_main(0);
    peer.join();
  }
}

TEST(GradientExchange, AnAttemptAbandonedOnOneRankKeepsTheGroupsSumsMatched) {
  // Rank 0's hooks start every bucket during a backward rank 1 never runs; both retry; the retry's sums are right.
  const auto flat = two_rank_gradients(Kind::flat, false);
  const auto retried = two_rank_gradients(Kind::overlap, true);
  for (size_t i = 0; i < flat[0].size(); ++i)
    for (int r = 0; r < 2; ++r) EXPECT_TRUE(torch::equal(retried[r][i], flat[r][i])) << "parameter " << i << " rank " << r;
}

// Counts what the exchange asks of its reducer, passing it on to the group reducer.
class CountingReducer final : public train::BucketReducer {
 public:
  struct Counts {
    int starts = 0, aborts = 0;  // each rank's own, read after its thread ended
  };
  CountingReducer(std::unique_ptr<train::BucketReducer> inner, Counts& counts) : inner_(std::move(inner)), counts_(counts) {}
  void start(torch::Tensor& flat) override {
    ++counts_.starts;
    inner_->start(flat);
  }
  void progress() override { inner_->progress(); }
  void wait_all() override { inner_->wait_all(); }
  void synchronize() override { inner_->synchronize(); }
  void abort() override { ++counts_.aborts; }
  std::string name() const override { return "counting"; }

 private:
  std::unique_ptr<train::BucketReducer> inner_;
  Counts& counts_;
};

// The end of a trial with an attempt open: rank 0's hooks started every bucket during a backward rank 1 never ran
// (an out-of-memory there, and no retry left). `agreed`: both ranks abandon() the step, as the epoch loop does on
// the group's verdict, then destroy their exchanges; otherwise they are destroyed with the attempt open.
std::array<CountingReducer::Counts, 2> give_up_with_an_attempt_open(bool agreed) {
  const TwoHalves data;
  ThreadPair pair;
  std::array<CountingReducer::Counts, 2> counts;
  std::array<torch::nn::Sequential, 2> nets{small_net(), small_net()};
  auto rank_main = [&](int rank) {
    torch::set_num_threads(1);
    ThreadGroup group(pair, rank);
    train::BucketOptions o;
    o.first_bytes = 64;
    o.cap_bytes = 512;
    auto ex = std::make_unique<train::BucketedGradientExchange>(
        nets[rank]->parameters(), std::make_unique<CountingReducer>(train::group_reducer(group, torch::kCPU), counts[rank]), o);
    ex->zero_gradients();
    if (rank == 0) {
      ex->before_backward(true);
      data.loss(nets[rank], rank, 0, 1).backward();
    }
    if (agreed) ex->abandon();
    ex.reset();
  };
  std::thread peer(rank_main, 1);
  rank_main(0);
  peer.join();
  return counts;
}

TEST(GradientExchange, AStepGivenUpByTheGroupCompletesTheSameSumsOnEveryRankBeforeTeardown) {
  // Unmatched sums at teardown are NCCL kernels spinning forever on the peer, over freed buckets.
  const auto agreed = give_up_with_an_attempt_open(true);
  EXPECT_GT(agreed[0].starts, 2);
  EXPECT_EQ(agreed[0].starts, agreed[1].starts) << "both ranks started the same sums";
  EXPECT_EQ(agreed[0].aborts + agreed[1].aborts, 0);
  // Destroyed with the attempt open and no agreement: the sums are aborted, not waited for, and none is added.
  const auto unagreed = give_up_with_an_attempt_open(false);
  EXPECT_EQ(unagreed[0].aborts, 1);
  EXPECT_EQ(unagreed[1].aborts, 1);
  EXPECT_EQ(unagreed[1].starts, 0);
}

// A reducer that reads its bucket when the sum starts (as NCCL and MPI do), a group of one.
class SnapshotReducer final : public train::BucketReducer {
 public:
  explicit SnapshotReducer(std::map<const void*, torch::Tensor>& snapshots) : snapshots_(snapshots) {}
  void start(torch::Tensor& flat) override { snapshots_[flat.data_ptr()] = flat.clone(); }
  void wait_all() override {}
  std::string name() const override { return "snapshot"; }

 private:
  std::map<const void*, torch::Tensor>& snapshots_;
};

TEST(GradientExchange, AGradientReboundDuringBackwardStillReachesItsBucketBeforeTheSumStarts) {
  // Backward with create_graph accumulates out of place (AccumulateGrad's GradMode branch): .grad is a new tensor,
  // no longer the bucket's view, and its value would silently drop out of the sum.
  const TwoHalves data;
  auto reference = small_net();
  data.loss(reference, 0, 0, 1).backward();
  auto net = small_net();
  auto params = net->parameters();
  std::map<const void*, torch::Tensor> snapshots;
  train::BucketOptions o;
  o.first_bytes = 64;
  o.cap_bytes = 512;
  train::BucketedGradientExchange ex(params, std::make_unique<SnapshotReducer>(snapshots), o);
  ex.zero_gradients();
  ex.before_backward(true);
  data.loss(net, 0, 0, 1).backward({}, /*retain_graph=*/true, /*create_graph=*/true);
  ex.finish();
  const auto storage = ex.gradient_storage();
  ASSERT_EQ(snapshots.size(), storage.size());
  const auto expected = reference->parameters();
  for (size_t i = 0; i < params.size(); ++i) {
    const auto& g = params[i].grad();
    size_t b = 0;
    while (b < storage.size() && !g.is_alias_of(storage[b])) ++b;
    ASSERT_LT(b, storage.size()) << "parameter " << i << "'s gradient is its bucket's view again";
    // The view's place in the bucket, read from the snapshot taken when the sum started.
    const int64_t at = (static_cast<const float*>(g.data_ptr()) - storage[b].data_ptr<float>());
    const auto seen = snapshots.at(storage[b].data_ptr()).as_strided(g.sizes(), g.strides(), at);
    EXPECT_TRUE(torch::allclose(seen, expected[i].grad(), 1e-5, 1e-7)) << "parameter " << i;
  }
}

// A CPU stand-in for CUDA streams and events: each operation is a node in its stream's sequence, each wait an edge
// from the event's stream, so the test can ask whether one operation happens before another.
struct StreamLog {
  using Stream = train::StreamOps::Stream;
  struct Op {
    std::string what;  // "record", "wait", "allreduce", "synchronize", "abort", or a mark's label
    Stream stream;
    int64_t position;
    const void* buffer = nullptr;       // allreduce
    Stream from = Stream::compute;      // wait: the event's stream and the position it was recorded at
    int64_t from_position = -1;
    bool buckets_alive = false;         // synchronize: every bucket summed so far was still allocated
  };
  std::vector<Op> ops;
  std::map<size_t, std::pair<Stream, int64_t>> events;
  std::array<int64_t, 2> next{0, 0};
  std::vector<c10::weak_intrusive_ptr<c10::TensorImpl>> summed;
  bool stuck = false;       // the side stream never finishes (a peer that stopped)
  std::string async_error;  // reported by the next poll

  Op& add(const std::string& what, Stream s) {
    ops.push_back({what, s, next[static_cast<size_t>(s)]++});
    return ops.back();
  }
  void mark(const std::string& label) { add(label, Stream::compute); }
  // Same stream: program order; otherwise a wait on b's stream, before b, for an event recorded after a.
  bool before(const Op& a, const Op& b) const {
    if (a.stream == b.stream) return a.position < b.position;
    for (const auto& w : ops)
      if (w.what == "wait" && w.stream == b.stream && w.position < b.position && w.from == a.stream &&
          w.from_position > a.position)
        return true;
    return false;
  }
  const Op& find(const std::string& what) const {
    for (const auto& op : ops)
      if (op.what == what) return op;
    throw std::runtime_error("no " + what + " in the log");
  }
  int64_t count(const std::string& what) const {
    return std::count_if(ops.begin(), ops.end(), [&](const Op& op) { return op.what == what; });
  }
};

class FakeStreams final : public train::StreamOps {
 public:
  explicit FakeStreams(std::shared_ptr<StreamLog> log) : log_(std::move(log)) {}
  void record(size_t event, Stream s) override {
    const auto& op = log_->add("record", s);
    log_->events[event] = {s, op.position};
  }
  void wait(Stream s, size_t event) override {
    const auto [from, at] = log_->events.at(event);
    auto& op = log_->add("wait", s);
    op.from = from;
    op.from_position = at;
  }
  void allreduce(torch::Tensor& flat) override {
    log_->add("allreduce", Stream::side).buffer = flat.data_ptr();
    log_->summed.emplace_back(flat.getIntrusivePtr());
  }
  void synchronize(Stream s) override {
    auto& op = log_->add("synchronize", s);
    op.buckets_alive = std::none_of(log_->summed.begin(), log_->summed.end(), [](const auto& w) { return w.expired(); });
  }
  bool query(size_t) override { return !log_->stuck; }
  std::string async_error() override { return log_->async_error; }
  void abort() override { log_->add("abort", Stream::side); }
  std::string name() const override { return "fake streams"; }

 private:
  std::shared_ptr<StreamLog> log_;
};

// Marks each parameter's accumulation on the compute stream, before the exchange's own hook runs (hooks run in the
// order they were added).
std::vector<std::shared_ptr<torch::autograd::Node>> mark_accumulations(std::vector<torch::Tensor>& params,
                                                                       std::shared_ptr<StreamLog> log) {
  std::vector<std::shared_ptr<torch::autograd::Node>> keep;
  for (size_t i = 0; i < params.size(); ++i) {
    auto acc = torch::autograd::impl::grad_accumulator(params[i]);
    acc->add_post_hook(std::make_unique<torch::autograd::utils::LambdaPostHook>(
        [log, i](const torch::autograd::variable_list& out, const torch::autograd::variable_list&) {
          log->mark("accumulated " + std::to_string(i));
          return out;
        }));
    keep.push_back(acc);
  }
  return keep;
}

TEST(GradientExchange, SideStreamSumsFollowTheirBucketsLastAccumulationAndPrecedeTheStep) {
  const TwoHalves data;
  auto net = small_net();
  auto params = net->parameters();
  auto log = std::make_shared<StreamLog>();
  const auto accumulators = mark_accumulations(params, log);
  train::BucketOptions o;
  o.first_bytes = 64;
  o.cap_bytes = 512;
  auto ex = std::make_unique<train::BucketedGradientExchange>(
      params, train::streamed_reducer(std::make_unique<FakeStreams>(log)), o);
  ex->zero_gradients();
  ex->before_backward(true);
  data.loss(net, 0, 0, 1).backward();
  ex->finish();
  log->mark("optimizer step");
  auto storage = ex->gradient_storage();
  ASSERT_EQ(log->count("allreduce"), static_cast<int64_t>(storage.size()));
  EXPECT_GT(storage.size(), 2u);
  const auto& step = log->find("optimizer step");
  for (const auto& op : log->ops) {
    if (op.what != "allreduce") continue;
    size_t b = 0;
    while (b < storage.size() && storage[b].data_ptr() != op.buffer) ++b;
    ASSERT_LT(b, storage.size());
    for (size_t i = 0; i < params.size(); ++i)
      if (params[i].grad().is_alias_of(storage[b]))
        EXPECT_TRUE(log->before(log->find("accumulated " + std::to_string(i)), op))
            << "bucket " << b << "'s sum launched before parameter " << i << " was accumulated";
    EXPECT_TRUE(log->before(op, step)) << "the step does not wait for bucket " << b << "'s sum";
  }

  // A second attempt, its sums started during backward, given up by the group: the host waits for the side stream
  // while the buckets still exist, before the exchange lets go of them.
  ex->zero_gradients();
  ex->before_backward(true);
  data.loss(net, 0, 0, 1).backward();
  const int64_t launched = log->count("allreduce");
  storage.clear();
  ex->abandon();
  ex.reset();
  ASSERT_EQ(log->count("synchronize"), 1);
  const auto& sync = log->find("synchronize");
  EXPECT_EQ(sync.stream, StreamLog::Stream::side);
  EXPECT_TRUE(sync.buckets_alive) << "the side stream was synchronised after its buckets were freed";
  for (const auto& op : log->ops)
    if (op.what == "allreduce") EXPECT_TRUE(log->before(op, sync));
  EXPECT_EQ(log->count("allreduce"), launched) << "every bucket of the attempt had started during its backward";
  EXPECT_EQ(log->count("abort"), 0);
}

TEST(GradientExchange, AnExchangeDestroyedWithAnAttemptOpenAndNoAgreementAbortsItsSums) {
  const TwoHalves data;
  auto net = small_net();
  auto log = std::make_shared<StreamLog>();
  {
    train::BucketedGradientExchange ex(net->parameters(), train::streamed_reducer(std::make_unique<FakeStreams>(log)));
    ex.zero_gradients();
    ex.before_backward(true);
    data.loss(net, 0, 0, 1).backward();
  }
  EXPECT_EQ(log->count("abort"), 1);
  EXPECT_EQ(log->count("synchronize"), 0) << "waiting would spin forever on sums the peers never match";
}

TEST(GradientExchange, TheWatchdogAbortsSumsThatStallAndAsynchronousErrorsStopTheStep) {
  auto log = std::make_shared<StreamLog>();
  log->stuck = true;
  std::promise<std::string> hung;
  train::HangPolicy policy;
  policy.timeout_seconds = 0.05;
  policy.on_hang = [&hung](const std::string& why) { hung.set_value(why); };
  auto reducer = train::streamed_reducer(std::make_unique<FakeStreams>(log), policy);
  auto flat = torch::zeros({4});
  reducer->start(flat);
  reducer->wait_all();
  auto verdict = hung.get_future();
  ASSERT_EQ(verdict.wait_for(std::chrono::seconds(60)), std::future_status::ready) << "the watchdog never fired";
  EXPECT_NE(verdict.get().find("not done after"), std::string::npos);
  EXPECT_EQ(log->count("abort"), 1);
  EXPECT_THROW(reducer->start(flat), Error) << "no sum starts on an aborted communicator";
  reducer.reset();

  // Sums that finish never trip it; an error reported asynchronously stops the next call.
  auto healthy = std::make_shared<StreamLog>();
  bool fired = false;
  policy.on_hang = [&fired](const std::string&) { fired = true; };
  auto ok = train::streamed_reducer(std::make_unique<FakeStreams>(healthy), policy);
  ok->start(flat);
  ok->wait_all();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  healthy->async_error = "unhandled cuda error";
  try {
    ok->start(flat);
    ADD_FAILURE() << "the asynchronous error was not reported";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("unhandled cuda error"), std::string::npos) << e.what();
  }
  ok.reset();
  EXPECT_FALSE(fired);
}

TEST(GradientExchange, TwoMembersOnOneGpuAreFoundBeforeNcclIsBootstrapped) {
  EXPECT_EQ(train::duplicate_device({"node1/aa", "node1/bb", "node2/aa"}), std::nullopt) << "the same GPU id on two hosts";
  EXPECT_EQ(train::duplicate_device({"node1/aa"}), std::nullopt);
  EXPECT_EQ(train::duplicate_device({"node1/aa", "node1/bb", "node1/aa"}),
            "ranks 0 and 2 of the trial's group share GPU aa on host node1");
}

TEST(GradientExchange, OnlyFloat32ParametersAreBucketedAndNcclNeedsCuda) {
  train::SoloGroup g;
  std::vector<torch::Tensor> doubles{torch::zeros({3}, torch::TensorOptions().dtype(torch::kDouble).requires_grad(true))};
  EXPECT_THROW(train::BucketedGradientExchange(doubles, train::group_reducer(g, torch::kCPU)), Error);
  EXPECT_THROW(train::nccl_reducer(g, torch::kCPU), Error);
}

struct EngineFixture {
  TempDir dir{"engine"};
  grid::TrialConfig trial;
  data::Dataset data;
  train::Environment env;
  train::SoloGroup group;
  std::string key = "0123456789abcdef";
  EngineFixture() {
    trial.input_size = kSize;
    trial.lr = 0.1;
    trial.weight_decay = 0;
    trial.wd_mode = WdMode::plain;
    trial.seed = 3;
    trial.optimizer = Optimizer::adamw;
    data.class_names = {"a", "b", "c"};
    env.backbone = flatten_backbone(dir);
    env.device = "cpu";
    env.threads = 1;
  }
  std::unique_ptr<train::Engine> make() {
    return train::TorchEngineFactory().make(train::EngineContext{trial, data, env, group, key});
  }
};

TEST(TorchEngine, ThePrecisionNoteOnTheCpuNamesTheTrial) {
  EngineFixture f;
  f.trial.precision = Precision::bf16;
  std::string captured;
  std::unique_ptr<train::Engine> engine;
  {
    LogCapture log;
    engine = f.make();
    captured = log.text();
  }
  EXPECT_NE(captured.find("trial 0123456789abcdef: precision bf16 applies on CUDA; training in fp32 on the CPU"),
            std::string::npos) << captured;
  EXPECT_EQ(engine->device(), "cpu");
  EXPECT_FALSE(engine->scales_loss()) << "no fp16 loss scaling off CUDA";
  engine->prepare();
  EXPECT_EQ(engine->parameters(), 3 * kSize * kSize * kClasses + kClasses) << "flatten: only the head learns";
  EXPECT_EQ(engine->feature_dim(), 3 * kSize * kSize);
}

TEST(TorchEngine, ARankThatCannotBuildItsModelStopsItsPeerBeforeTheExchangeIsBootstrapped) {
  // NCCL's bootstrap is collective and blocking: a peer that failed before it (a backbone it cannot load, an
  // out-of-memory moving the model) left the others waiting there for ever. The group agrees first.
  ThreadPair pair;
  std::array<std::string, 2> errors;
  auto rank_main = [&](int rank) {
    EngineFixture f;
    if (rank == 1) f.env.backbone = (f.dir / "missing.pt").string();
    ThreadGroup group(pair, rank);
    auto engine = train::TorchEngineFactory().make(train::EngineContext{f.trial, f.data, f.env, group, f.key});
    try {
      engine->prepare();
    } catch (const std::exception& e) {
      errors[rank] = e.what();
    }
  };
  std::thread peer(rank_main, 1);
  rank_main(0);
  peer.join();
  EXPECT_NE(errors[0].find("a data-parallel peer could not build its model"), std::string::npos) << errors[0];
  EXPECT_NE(errors[1].find("missing.pt"), std::string::npos) << errors[1];
}

TEST(TorchEngine, ReadsOutOfMemoryFromTorchsErrors) {
  const train::TorchEngineFactory torch_engine;
  const c10::Error oom(c10::SourceLocation{__func__, __FILE__, static_cast<uint32_t>(__LINE__)},
                       "CUDA out of memory. Tried to allocate 2.00 GiB");
  const auto f = torch_engine.classify(oom);
  EXPECT_TRUE(f.out_of_memory);
  EXPECT_EQ(f.message.find("CUDA out of memory"), 0u) << f.message;
  const auto other = torch_engine.classify(std::runtime_error("shape mismatch"));
  EXPECT_FALSE(other.out_of_memory);
  EXPECT_EQ(other.message, "shape mismatch");
}

TEST(TorchEngine, ItsStateRoundTripsThroughBytes) {
  EngineFixture f;
  auto engine = f.make();
  engine->prepare();
  const auto s = shard(false);
  auto step = [&] {
    const auto a = engine->forward_backward(s.batch, 1, 1.0);
    ASSERT_TRUE(a.failure.empty()) << a.failure;
    ASSERT_FALSE(a.out_of_memory);
    ASSERT_TRUE(engine->unscale_gradients(1.0));
    engine->apply_step(0.1);
  };
  step();
  const std::string saved = engine->save_state();
  step();
  const double after_two = engine->forward_backward(s.batch, 1, 1.0).loss;
  engine->load_state(saved);
  step();
  EXPECT_EQ(engine->forward_backward(s.batch, 1, 1.0).loss, after_two)
      << "weights and AdamW moments restored: the second step again gives the same loss, bit for bit";
  EXPECT_FALSE(engine->unscale_gradients(0.0)) << "a division by zero overflows";
}

}  // namespace
}  // namespace xfer::test
