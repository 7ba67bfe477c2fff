// train/device_input: the device input pipeline (`--input-pipeline device`), as GPU shops feed their models: each
// split decoded once into a memory-mapped uint8 cache at the trial's size (data/pixel_cache), then per batch the
// cached rows are gathered into pinned host memory, copied to the device asynchronously (a copy stream on CUDA, one
// batch ahead), and cropped, flipped and normalised there. The epoch's order and shards are the host loader's
// (data::epoch_order, shard_of), so the two sources give a trial the same samples in the same batches.
//  - Evaluation: the cache holds the evaluation transform's output, and normalisation is a lookup of the host
//    loader's own table: the tensors equal the host loader's bit for bit.
//  - Training: RandomResizedCrop's box and the flips are drawn from the same generator as the host transform, but
//    from the cached square (the shorter side resized to the input size and centre-cropped), and resampled with
//    bilinear grid sampling — the documented difference from the host pipeline, which crops the full image.
//    Extra augmentation recipes (RandAugment, AugMix, colour/affine) stay on the host pipeline.
#pragma once

#include <future>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "xfer/data/loader.hpp"
#include "xfer/data/pixel_cache.hpp"

namespace xfer::train {

class DeviceInput final : public data::BatchSource {
 public:
  // Opens (or builds, with `threads` decode threads) the split's cache in `cache_folder`.
  DeviceInput(const data::Dataset& d, std::vector<int64_t> indices, data::TransformSettings t, data::LoaderOptions o,
              const std::string& cache_folder, const torch::Device& device, int threads)
      : DeviceInput(d, indices, t, o,
                    data::PixelCache::open_or_build(cache_folder, d, indices, cache_settings(t), threads), device) {}
  // Over a cache already open, holding the split's `indices` as cache_settings(t) makes them (gpu_smoke's
  // synthetic cache; the constructor above is inline so that a build without the decoders links this one alone).
  DeviceInput(const data::Dataset& d, std::vector<int64_t> indices, data::TransformSettings t, data::LoaderOptions o,
              std::unique_ptr<data::PixelCache> cache, const torch::Device& device);
  // What the cache holds for transform `t`: its evaluation output, or for training the whole square at the input
  // size (crop_pct 1), which the random crops are drawn from.
  static data::TransformSettings cache_settings(const data::TransformSettings& t);
  ~DeviceInput() override;

  int64_t size() const override { return static_cast<int64_t>(indices_.size()); }
  int64_t batches_per_epoch() const override { return batches_; }
  void start_epoch(int epoch, int64_t first_batch) override;
  using data::BatchSource::start_epoch;
  std::shared_ptr<const data::Batch> next() override;
  std::vector<data::Problem> problems() const override;
  data::EpochTally epoch_tally() const override;

  // A batch's images: N × 3 × S × S float32 (channels-last memory) on the device.
  static const torch::Tensor& images(const data::Batch& b);
  const data::PixelCache& cache() const { return *cache_; }

 private:
  std::shared_ptr<data::Batch> make(int64_t batch, int epoch);
  torch::Tensor transform(const torch::Tensor& pixels, const std::vector<int64_t>& samples, int epoch) const;

  const data::Dataset& d_;
  std::vector<int64_t> indices_;
  data::TransformSettings t_;
  data::LoaderOptions o_;
  torch::Device device_;
  std::unique_ptr<data::PixelCache> cache_;
  torch::Tensor lut_;                        // 3 × 256: the host loader's normalisation table
  torch::Tensor mean_, std_;                 // 1 × 3 × 1 × 1
  int64_t batches_ = 0;
  int epoch_ = 0;
  int64_t next_ = 0;
  std::vector<int64_t> order_;
  std::future<std::shared_ptr<data::Batch>> ahead_;  // the next batch, being prepared
  // CUDA: the copy stream, one for the pipeline's life — the caching allocator reuses a freed block only on the
  // stream it was allocated on, so a pool stream per batch would cache every batch's temporaries apart.
  std::shared_ptr<void> stream_;
  mutable std::mutex mu_;
  std::set<int64_t> bad_;
  std::vector<data::Problem> problems_;
  data::EpochTally tally_;
};

}  // namespace xfer::train
