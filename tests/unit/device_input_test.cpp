// The device input pipeline (train/device_input, data/pixel_cache) against the host loader, on the generated
// dataset layouts (real PNG/JPEG files of many sizes, grey planes, undecodable files): the same batches, the
// evaluation tensors bit for bit, the training crops and flips as the affine sampling they are, the cache built once.
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <thread>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "device_input.hpp"
#include "support/dataset_fixtures.hpp"
#include "support/tempdir.hpp"
#include "xfer/data/loader.hpp"
#include "xfer/data/pixel_cache.hpp"

namespace xfer::test {
namespace {

class DeviceInputTest : public Fixtures {};

data::TransformSettings eval_settings(int size) {
  data::TransformSettings t;
  t.size = size;
  t.crop_pct = 0.875;
  return t;
}

data::LoaderOptions options(int rank, int world, bool shuffle) {
  data::LoaderOptions o;
  o.batch_size = 7;
  o.rank = rank;
  o.world = world;
  o.shuffle = shuffle;
  o.seed = 5;
  o.threads = 2;
  return o;
}

torch::Tensor host_images(const data::Batch& b) {
  return torch::from_blob(b.data, {b.n, 3, b.size, b.size}, torch::kFloat).clone();
}

// A stand-in for a non-blocking host-to-device copy: it reads the batch's buffer on another thread, later — when the
// loader says it needs the slot back (the hold it registered), or when the test ends (a stream far behind).
class DeferredCopier {
 public:
  ~DeferredCopier() {
    release_all();
    for (auto& t : threads_) t.join();
  }
  // The copy of `b`'s images, valid once the copier's threads are joined.
  std::vector<float>& copy(const data::Batch& b) {
    auto job = std::make_shared<Job>();
    jobs_.push_back(job);
    const float* src = b.data;
    const size_t n = static_cast<size_t>(b.n) * 3 * b.size * b.size;
    threads_.emplace_back([job, src, n] {
      std::unique_lock<std::mutex> lock(job->mu);
      job->cv.wait(lock, [&] { return job->go; });
      job->out.assign(src, src + n);
      job->done = true;
      job->cv.notify_all();
    });
    b.hold_until([job] {
      std::unique_lock<std::mutex> lock(job->mu);
      job->go = true;
      job->cv.notify_all();
      job->cv.wait(lock, [&] { return job->done; });
    });
    return job->out;
  }
  void release_all() {
    for (auto& j : jobs_) {
      std::lock_guard<std::mutex> lock(j->mu);
      j->go = true;
      j->cv.notify_all();
    }
  }
  void join() {
    release_all();
    for (auto& t : threads_) t.join();
    threads_.clear();
  }

 private:
  struct Job {
    std::mutex mu;
    std::condition_variable cv;
    bool go = false, done = false;
    std::vector<float> out;
  };
  std::vector<std::shared_ptr<Job>> jobs_;
  std::vector<std::thread> threads_;
};

TEST_F(DeviceInputTest, TheLoaderRefillsASlotOnlyAfterAnAsynchronousCopyOfItsLastBatchIsDone) {
  // On CUDA the host loader's batch goes to the GPU by a non-blocking copy from its pinned slot; the training thread
  // lets go of the batch long before the stream gets to the copy. Refilling the slot then would train on the next
  // batch's pixels (gpu-review W1).
  const auto d = open("eurosat");
  const auto idx = d.indices(data::Split::train);
  auto o = options(0, 1, true);
  o.prefetch = 2;
  data::Loader loader(d, idx, eval_settings(16), o);
  ASSERT_GT(loader.batches_per_epoch(), 2 * o.prefetch) << "slots are reused within the epoch";
  DeferredCopier copier;
  std::vector<std::vector<float>> expected;
  std::vector<std::vector<float>*> copies;
  loader.start_epoch(0);
  while (auto b = loader.next()) {
    expected.emplace_back(b->data, b->data + b->n * 3 * b->size * b->size);
    copies.push_back(&copier.copy(*b));
  }
  copier.join();
  for (size_t i = 0; i < expected.size(); ++i)
    EXPECT_EQ(*copies[i], expected[i]) << "batch " << i << " was refilled before its copy read it";
}

TEST_F(DeviceInputTest, EvaluationTensorsEqualTheHostLoadersBitForBitWithTheSameBatchesAndProblems) {
  TempDir cache("pixels");
  size_t problems = 0, compared = 0;
  for (const std::string layout : {"aptos", "hpa", "eurosat"}) {
    const auto d = open(layout);
    const auto idx = d.indices(data::Split::train);
    for (int rank = 0; rank < 2; ++rank) {
      data::Loader host(d, idx, eval_settings(24), options(rank, 2, false));
      train::DeviceInput dev(d, idx, eval_settings(24), options(rank, 2, false), cache.str(), torch::kCPU, 2);
      ASSERT_EQ(dev.batches_per_epoch(), host.batches_per_epoch()) << layout;
      host.start_epoch(0);
      dev.start_epoch(0);
      int64_t batches = 0;
      while (auto h = host.next()) {
        auto g = dev.next();
        ASSERT_TRUE(g) << layout;
        EXPECT_EQ(g->samples, h->samples) << layout << " batch " << h->index;
        EXPECT_EQ(g->labels, h->labels);
        EXPECT_EQ(g->targets, h->targets);
        EXPECT_EQ(g->global_n, h->global_n);
        EXPECT_EQ(g->skipped.size(), h->skipped.size());
        ASSERT_EQ(g->n, h->n);
        if (h->n > 0) {
          EXPECT_TRUE(torch::equal(train::DeviceInput::images(*g), host_images(*h))) << layout << " batch " << h->index;
          compared += static_cast<size_t>(h->n);
        }
        ++batches;
      }
      EXPECT_FALSE(dev.next());
      EXPECT_EQ(batches, dev.batches_per_epoch());
      EXPECT_EQ(dev.epoch_tally().usable, host.epoch_tally().usable) << layout;
      EXPECT_EQ(dev.epoch_tally().skipped, host.epoch_tally().skipped) << layout;
      ASSERT_EQ(dev.problems().size(), host.problems().size()) << layout;
      for (size_t i = 0; i < dev.problems().size(); ++i) EXPECT_EQ(dev.problems()[i].reason, host.problems()[i].reason);
      problems += dev.problems().size();
    }
  }
  EXPECT_GT(problems, 0u) << "undecodable files are skipped and reported alike";
  EXPECT_GT(compared, 100u);
}

TEST_F(DeviceInputTest, TheCacheIsBuiltOnceNamedByItsContentAndAShortFileIsBuiltAgain) {
  TempDir cache("pixels");
  const auto d = open("aptos");
  const auto idx = d.indices(data::Split::train);
  auto first = data::PixelCache::open_or_build(cache.str(), d, idx, eval_settings(16), 1);
  EXPECT_TRUE(first->built_now());
  auto again = data::PixelCache::open_or_build(cache.str(), d, idx, eval_settings(16), 1);
  EXPECT_FALSE(again->built_now()) << "a second trial opens the same file";
  EXPECT_EQ(again->path(), first->path());
  auto other = data::PixelCache::open_or_build(cache.str(), d, idx, eval_settings(20), 1);
  EXPECT_NE(other->path(), first->path()) << "another size, another file";
  auto fewer = std::vector<int64_t>(idx.begin(), idx.begin() + 10);
  EXPECT_NE(data::PixelCache::key(d, fewer, eval_settings(16)), data::PixelCache::key(d, idx, eval_settings(16)));
  // A file cut short (a copy gone wrong) is never read past its end: it is built again (reliability_data_faults_test
  // covers zeroed and overwritten files).
  const auto size = std::filesystem::file_size(first->path());
  std::filesystem::resize_file(first->path(), 4096 * 2);
  first.reset();
  again.reset();
  auto rebuilt = data::PixelCache::open_or_build(cache.str(), d, idx, eval_settings(16), 1);
  EXPECT_TRUE(rebuilt->built_now());
  EXPECT_EQ(std::filesystem::file_size(rebuilt->path()), size);
}

TEST_F(DeviceInputTest, TrainingCropsAreTheSampledBoxOfTheCachedSquareFlippedAsDrawn) {
  TempDir cache("pixels");
  const auto d = open("eurosat");
  const auto idx = d.indices(data::Split::train);
  auto train_settings = [](double scale_lo) {
    data::TransformSettings t = eval_settings(16);
    t.crop_pct = 1.0;
    t.train = true;
    t.scale_lo = scale_lo;
    t.scale_hi = 1.0;
    t.ratio_lo = t.ratio_hi = 1.0;
    t.flips = Flips::h;
    t.seed = 9;
    return t;
  };
  // The whole square (scale 1, ratio 1): the identity sampling, or its mirror where the flip was drawn.
  train::DeviceInput whole(d, idx, train_settings(1.0), options(0, 1, true), cache.str(), torch::kCPU, 2);
  data::TransformSettings square = eval_settings(16);
  square.crop_pct = 1.0;
  data::Loader plain(d, idx, square, options(0, 1, true));
  whole.start_epoch(3);
  plain.start_epoch(3);
  int flipped = 0, kept = 0;
  while (auto g = whole.next()) {
    auto h = plain.next();
    ASSERT_EQ(g->samples, h->samples) << "the shuffled order is the host loader's";
    const auto x = train::DeviceInput::images(*g), y = host_images(*h);
    for (int64_t i = 0; i < g->n; ++i) {
      const bool same = torch::allclose(x[i], y[i], 1e-4, 1e-4);
      const bool mirror = torch::allclose(x[i], y[i].flip({2}), 1e-4, 1e-4);
      EXPECT_TRUE(same || mirror) << "sample " << g->samples[i];
      flipped += mirror && !same, kept += same;
    }
  }
  EXPECT_GT(flipped, 0);
  EXPECT_GT(kept, 0);
  // Random boxes: deterministic in (seed, epoch, sample), another epoch another crop, values in the normalised range.
  train::DeviceInput a(d, idx, train_settings(0.3), options(0, 1, true), cache.str(), torch::kCPU, 1);
  train::DeviceInput b(d, idx, train_settings(0.3), options(0, 1, true), cache.str(), torch::kCPU, 1);
  a.start_epoch(1);
  b.start_epoch(1);
  const auto xa = train::DeviceInput::images(*a.next()), xb = train::DeviceInput::images(*b.next());
  EXPECT_TRUE(torch::equal(xa, xb));
  EXPECT_TRUE(xa.is_contiguous(at::MemoryFormat::ChannelsLast));
  EXPECT_LE(xa.abs().max().item<float>(), 2.7f) << "(0 - 0.485) / 0.229 .. (1 - 0.406) / 0.225";
  b.start_epoch(2);
  EXPECT_FALSE(torch::equal(train::DeviceInput::images(*b.next()), xa));
}

}  // namespace
}  // namespace xfer::test
