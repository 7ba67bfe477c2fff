// The LibTorch engine's parts in-process: the criterion against its closed form, the step over micro-batches
// against one pass over the whole shard, loss scaling through backward, the gradient exchange over a group, and the
// engine itself — its set-up messages, its reading of torch's errors, its state round trip.
// The backbone is a TorchScript module made here (flatten: no BatchNorm, so micro-batches change nothing).
#include <array>
#include <cmath>
#include <condition_variable>
#include <mutex>
#include <sstream>
#include <thread>

#include <ATen/autocast_mode.h>
#include <gtest/gtest.h>
#include <torch/script.h>
#include <torch/torch.h>

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
  EXPECT_NEAR(train::criterion_sum(c, logits, s.batch, 0, kN).item<double>(), expected, 1e-5);
  // Samples [2, 5) alone.
  double part = 0;
  for (int i = 2; i < 5; ++i)
    for (int k = 0; k < kClasses; ++k)
      part -= ((k == s.batch.labels[i] ? 0.9 : 0.0) + 0.1 / kClasses) * logp[i][k].item<double>();
  EXPECT_NEAR(train::criterion_sum(c, logits.slice(0, 2, 5), s.batch, 2, 5).item<double>(), part, 1e-5);

  c.multilabel = true;
  double bce = 0;
  for (int i = 0; i < kN; ++i)
    for (int k = 0; k < kClasses; ++k) {
      const double z = logits[i][k].item<double>(), y = s.batch.targets[i * kClasses + k];
      const double p = 1 / (1 + std::exp(-z));
      bce -= y * std::log(p) + (1 - y) * std::log(1 - p);
    }
  EXPECT_NEAR(train::criterion_sum(c, logits, s.batch, 0, kN).item<double>(), bce / kClasses, 1e-5);
}

TEST(Step, MicroBatchesAccumulateTheSameLossAndGradientsAsOnePass) {
  TempDir dir("step");
  model::Classifier m(flatten_backbone(dir), kSize, kClasses, 5);
  m.train(true);
  const auto s = shard(false);
  train::StepSettings st;
  st.criterion.classes = kClasses;
  const double one = train::forward_backward(m, s.batch, s.x, st);
  const auto whole = gradients(m);
  for (int micro : {2, 3, 8}) {
    zero(m);
    st.micro_batches = micro;
    EXPECT_NEAR(train::forward_backward(m, s.batch, s.x, st), one, 1e-6) << micro;
    const auto parts = gradients(m);
    for (size_t i = 0; i < whole.size(); ++i) EXPECT_TRUE(torch::allclose(parts[i], whole[i], 1e-5, 1e-7)) << micro;
  }
  // The loss is the shard's sum over the global batch: the mean over the shard, halved.
  train::Criterion c;
  c.classes = kClasses;
  torch::NoGradGuard ng;
  const double mean = train::criterion_sum(c, m.forward(s.x), s.batch, 0, kN).item<double>() / kN;
  EXPECT_NEAR(one, mean / 2, 1e-6);
}

TEST(Step, TheLossScaleMultipliesTheGradients) {
  TempDir dir("scale");
  model::Classifier m(flatten_backbone(dir), kSize, kClasses, 5);
  const auto s = shard(false);
  train::StepSettings st;
  st.criterion.classes = kClasses;
  const double plain = train::forward_backward(m, s.batch, s.x, st);
  const auto g1 = gradients(m);
  zero(m);
  st.loss_scale = 1024;
  EXPECT_NEAR(train::forward_backward(m, s.batch, s.x, st), plain, 1e-9) << "the reported loss is unscaled";
  const auto g2 = gradients(m);
  for (size_t i = 0; i < g1.size(); ++i) EXPECT_TRUE(torch::allclose(g2[i], g1[i] * 1024, 1e-5, 1e-5));
}

bool cuda_autocast_on() {
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
  return at::autocast::is_autocast_enabled(at::kCUDA);
#else
  return at::autocast::is_enabled();
#endif
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
  ASSERT_FALSE(cuda_autocast_on());
  const auto wrong = torch::zeros({kN, 3, kSize + 1, kSize + 1});  // the head's input size does not match
  EXPECT_ANY_THROW(train::forward_backward(m, s.batch, wrong, st));
  EXPECT_FALSE(cuda_autocast_on()) << "autocast left on after the exception";
  train::AutocastScope scope(false, at::kBFloat16);
  EXPECT_FALSE(cuda_autocast_on()) << "a scope that is off changes nothing";
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

TEST(GradientExchange, SumsEveryGradientInOneBucketAndFillsMissingOnesWithZeros) {
  auto a = torch::ones({2, 3}, torch::requires_grad());
  auto b = torch::ones({4}, torch::requires_grad());
  (a * torch::arange(6).reshape({2, 3})).sum().backward();
  std::vector<torch::Tensor> params{a, b};
  TwinGroup g;
  train::GroupGradientExchange exchange(params, g, torch::kCPU);
  exchange.finish();
  EXPECT_EQ(g.reduced, 10u) << "one all-reduce over all 10 values";
  EXPECT_TRUE(torch::equal(a.grad(), 2 * torch::arange(6).reshape({2, 3}).to(torch::kFloat)));
  ASSERT_TRUE(b.grad().defined());
  EXPECT_TRUE(torch::equal(b.grad(), torch::zeros({4})));

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

TEST(GradientExchange, AnAttemptAbandonedOnOneRankKeepsTheGroupsSumsMatched) {
  // Rank 0's hooks start every bucket during a backward rank 1 never runs; both retry; the retry's sums are right.
  const auto flat = two_rank_gradients(Kind::flat, false);
  const auto retried = two_rank_gradients(Kind::overlap, true);
  for (size_t i = 0; i < flat[0].size(); ++i)
    for (int r = 0; r < 2; ++r) EXPECT_TRUE(torch::equal(retried[r][i], flat[r][i])) << "parameter " << i << " rank " << r;
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
