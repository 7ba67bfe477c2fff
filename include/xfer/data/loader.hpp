// data/loader: batches of transformed samples as contiguous float32 N×C×S×S buffers, decoded and augmented by worker
// threads into a bounded ring of batch slots (memory: prefetch × batch bytes plus one decode buffer per thread,
// whatever the dataset's size), delivered in order. Each rank of a data-parallel group takes its shard of every
// global batch; the epoch's order is a permutation drawn from (seed, epoch), so a resumed trial sees the same
// stream from any batch on.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "xfer/data/dataset.hpp"
#include "xfer/data/transform.hpp"

namespace xfer::data {

struct LoaderOptions {
  int batch_size = 128;     // the global batch: all ranks of the group together
  int rank = 0, world = 1;  // this rank's place in its data-parallel group
  bool shuffle = false;     // training: a fresh permutation per epoch from (seed, epoch)
  bool drop_last = false;
  // Training: a last batch too small to give every rank this many samples is dropped (BatchNorm cannot train on a
  // single sample; PyTorch fails there too). 0: keep it.
  int min_shard = 0;
  int threads = 1;          // decode/augment threads
  int prefetch = 2;         // batch slots: the most batches decoded ahead of the consumer
  uint64_t seed = 0;
  // Where batch buffers live: pinned host memory when training on CUDA (the trainer passes cudaHostAlloc-backed
  // allocators through torch); plain aligned memory otherwise.
  std::function<void*(size_t)> allocate;
  std::function<void(void*)> release;
  // Keep transformed images (uint8 S×S) in memory for transforms without randomness (evaluation): the second
  // epoch on does no decoding. Bounded by cache_bytes; images beyond it are decoded each time.
  bool cache = false;
  size_t cache_bytes = size_t(2) << 30;
};

struct Batch {
  int64_t index = 0;      // batch number within the epoch
  int64_t n = 0;          // samples in this rank's shard
  int64_t global_n = 0;   // samples in the whole global batch (for the loss's normalisation)
  int channels = 3, size = 0;
  float* data = nullptr;  // n × channels × size × size
  std::vector<int32_t> labels;     // single-label: n
  std::vector<float> targets;      // multi-label: n × classes, 0/1
  std::vector<int64_t> samples;    // dataset indices
  std::vector<Problem> skipped;    // samples of this shard that could not be decoded (dropped from it)
  // A device pipeline's batch (train/device_input): the images as a tensor on the trial's device, type-erased for
  // the engine that made the pipeline; `data` is then null.
  std::shared_ptr<void> device_images;
  // Host memory of this batch still being read after the consumer let go of it (a non-blocking copy to a GPU, done
  // when its stream gets there): the consumer adds a wait here, and the loader's worker runs every one before it
  // refills the buffer — in the worker thread, so the consumer never blocks on the copy.
  void hold_until(std::function<void()> done) const { holds_.push_back(std::move(done)); }
  void await_holds() {
    for (auto& h : holds_) h();
    holds_.clear();
  }

 private:
  mutable std::vector<std::function<void()>> holds_;
};

// What this rank's shard of an epoch held, counted over the batches next() has delivered since start_epoch: how
// many samples, how many decoded into a batch, how many were skipped as undecodable (each skip's Problem is in
// Batch::skipped and Loader::problems(), the reason naming the file: "<path>: empty file").
struct EpochTally {
  int64_t samples = 0;
  int64_t usable = 0;
  int64_t skipped = 0;
  std::string first_skipped;  // the reason of the first skipped sample, "" if none
  EpochTally& operator+=(const EpochTally& o) {
    samples += o.samples;
    usable += o.usable;
    skipped += o.skipped;
    if (first_skipped.empty()) first_skipped = o.first_skipped;
    return *this;
  }
};

// "no usable training samples: 40 of 40 undecodable (first: <path>: empty file)" when a whole epoch (the tally
// summed over the ranks of the group) had samples and not one of them decoded; nullopt otherwise. `split` names it
// in the message ("training", "validation", "test").
std::optional<std::string> no_usable_samples(const EpochTally& epoch, const std::string& split);

// The epoch's order, batches and shards every batch source shares, so a trial sees the same stream whichever
// source reads it: the identity, or a permutation drawn from (seed, epoch); batches of the global batch size (a last
// batch too small for min_shard samples per rank dropped); rank r of w takes positions [lo, hi) of batch b.
std::vector<int64_t> epoch_order(int64_t n, bool shuffle, uint64_t seed, int epoch);
int64_t batches_in_epoch(int64_t n, const LoaderOptions& o);
std::pair<int64_t, int64_t> shard_of(int64_t batch, int64_t n, const LoaderOptions& o, int64_t* global_n);
// Appends sample `sample` of `d` to the batch's samples and its label (single-label) or 0/1 targets (multi-label).
void append_sample(const Dataset& d, int64_t sample, Batch& batch);

// What a trainer reads batches from: the host loader below, or the device pipeline of train/device_input.
class BatchSource {
 public:
  virtual ~BatchSource() = default;
  virtual int64_t size() const = 0;               // samples per epoch (all ranks)
  virtual int64_t batches_per_epoch() const = 0;
  // Starts an epoch at `first_batch` (resume). Batches of a previous epoch not yet consumed are discarded.
  virtual void start_epoch(int epoch, int64_t first_batch) = 0;
  void start_epoch(int epoch) { start_epoch(epoch, 0); }
  // The next batch of this rank's shard, or nullptr at the end of the epoch.
  virtual std::shared_ptr<const Batch> next() = 0;
  virtual std::vector<Problem> problems() const = 0;  // every sample dropped so far (decode failures), each once
  virtual EpochTally epoch_tally() const = 0;         // this rank's counts for the epoch so far
};

class Loader final : public BatchSource {
 public:
  Loader(const Dataset& d, std::vector<int64_t> indices, TransformSettings t, LoaderOptions o);
  ~Loader();
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;

  int64_t size() const override;               // samples per epoch (all ranks)
  int64_t batches_per_epoch() const override;
  // Starts an epoch at `first_batch` (resume). Batches of a previous epoch not yet consumed are discarded.
  void start_epoch(int epoch, int64_t first_batch) override;
  using BatchSource::start_epoch;
  // The next batch of this rank's shard, or nullptr at the end of the epoch. Hold at most prefetch - 1 batches at
  // once. Throws the worker's error: DecodeError under strict, anything unexpected otherwise.
  std::shared_ptr<const Batch> next() override;
  // Every sample dropped so far (decode failures), each once.
  std::vector<Problem> problems() const override;
  // This rank's counts for the epoch so far (reset by start_epoch). After the epoch's last batch, a trainer sums
  // them over the group and calls no_usable_samples: a split where nothing decoded must fail the trial, not train
  // on empty batches (a NaN loss recorded as `done`).
  EpochTally epoch_tally() const override;
  // Peak bytes of batch buffers held (the bound: prefetch × batch bytes).
  size_t buffer_bytes() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace xfer::data
