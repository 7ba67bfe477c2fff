// The epoch's order, batches and shards every batch source shares (data/loader.hpp): the host loader and the device
// pipeline (train/device_input) alike. Apart from the loader's threads and the transform's decoding, so gpu_smoke
// compiles it on a machine without OpenCV.
#include <algorithm>

#include "xfer/data/loader.hpp"

namespace xfer::data {

std::vector<int64_t> epoch_order(int64_t n, bool shuffle, uint64_t seed, int epoch) {
  std::vector<int64_t> order(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) order[static_cast<size_t>(i)] = i;
  if (shuffle) {
    Rng rng = Rng::derive(seed, static_cast<uint64_t>(epoch), 0x5F0CEULL);
    for (int64_t i = n - 1; i > 0; --i) std::swap(order[static_cast<size_t>(i)], order[static_cast<size_t>(rng.below(i + 1))]);
  }
  return order;
}

int64_t batches_in_epoch(int64_t n, const LoaderOptions& o) {
  int64_t batches = o.drop_last ? n / o.batch_size : (n + o.batch_size - 1) / o.batch_size;
  if (!o.drop_last && o.min_shard > 0 && n % o.batch_size != 0 && (n % o.batch_size) < int64_t(o.min_shard) * o.world)
    batches = n / o.batch_size;
  return batches;
}

void append_sample(const Dataset& d, int64_t sample, Batch& batch) {
  const Sample& s = d.samples[static_cast<size_t>(sample)];
  batch.samples.push_back(sample);
  if (d.multilabel) {
    const size_t at = batch.targets.size();
    batch.targets.resize(at + static_cast<size_t>(d.num_classes()), 0.0f);
    for (auto l : s.labels) batch.targets[at + l] = 1.0f;
  } else {
    batch.labels.push_back(s.label);
  }
}

std::pair<int64_t, int64_t> shard_of(int64_t b, int64_t n, const LoaderOptions& o, int64_t* global_n) {
  const int64_t start = b * o.batch_size;
  const int64_t len = std::min<int64_t>(o.batch_size, n - start);
  *global_n = len;
  return {start + len * o.rank / o.world, start + len * (o.rank + 1) / o.world};
}

std::optional<std::string> no_usable_samples(const EpochTally& e, const std::string& split) {
  if (e.samples == 0 || e.usable > 0) return std::nullopt;
  return "no usable " + split + " samples: " + std::to_string(e.skipped) + " of " + std::to_string(e.samples) +
         " undecodable" + (e.first_skipped.empty() ? "" : " (first: " + e.first_skipped + ")");
}

}  // namespace xfer::data
