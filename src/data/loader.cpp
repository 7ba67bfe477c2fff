#include "xfer/data/loader.hpp"

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_map>

#include "xfer/core/error.hpp"

namespace xfer::data {

struct Loader::Impl {
  const Dataset& d;
  std::vector<int64_t> indices;
  Transform transform;
  LoaderOptions o;
  size_t sample_floats;
  int64_t max_shard;

  // Slot s holds batch b with b % prefetch == s.
  struct Slot {
    Batch batch;
    float* buffer = nullptr;
    int64_t ready_for = -1;  // batch number it holds, -1 when free
    bool in_use = false;     // handed to the consumer
  };
  std::vector<Slot> slots;

  mutable std::mutex mu;
  std::condition_variable cv_work, cv_ready;
  std::vector<std::thread> workers;
  bool stopping = false;
  uint64_t generation = 0;       // bumped by start_epoch
  int epoch = 0;
  std::vector<int64_t> order;    // this epoch's permutation of positions into `indices`
  int64_t next_to_claim = 0;     // next batch a worker takes
  int64_t next_to_deliver = 0;   // next batch the consumer gets
  int64_t batches = 0;
  std::exception_ptr error;
  std::set<int64_t> bad;         // samples that failed to decode
  std::vector<Problem> problem_list;
  EpochTally tally;              // over the batches delivered this epoch

  // Evaluation cache: transformed uint8 images by sample.
  std::mutex cache_mu;
  std::unordered_map<int64_t, Image> cache;
  size_t cache_used = 0;

  Impl(const Dataset& d_, std::vector<int64_t> idx, TransformSettings t, LoaderOptions o_)
      : d(d_), indices(std::move(idx)), transform(std::move(t)), o(std::move(o_)) {
    if (o.batch_size < 1) throw Error::input("loader: batch_size must be ≥ 1");
    if (o.world < 1 || o.rank < 0 || o.rank >= o.world) throw Error::input("loader: rank must be in [0, world)");
    if (o.prefetch < 1) o.prefetch = 1;
    if (o.threads < 1) o.threads = 1;
    if (!o.allocate) {
      o.allocate = [](size_t n) { return std::aligned_alloc(64, (n + 63) / 64 * 64); };
      o.release = [](void* p) { std::free(p); };
    }
    const int S = transform.settings().size;
    sample_floats = static_cast<size_t>(3) * S * S;
    max_shard = (o.batch_size + o.world - 1) / o.world;
    batches = batches_in_epoch(static_cast<int64_t>(indices.size()), o);
    slots.resize(static_cast<size_t>(o.prefetch));
    for (auto& s : slots) {
      s.buffer = static_cast<float*>(o.allocate(sample_floats * max_shard * sizeof(float)));
      if (!s.buffer) throw Error("loader: cannot allocate batch buffers");
    }
    next_to_claim = next_to_deliver = batches;  // no epoch started
    for (int t = 0; t < o.threads; ++t) workers.emplace_back([this] { work(); });
  }

  ~Impl() {
    {
      std::lock_guard<std::mutex> lock(mu);
      stopping = true;
    }
    cv_work.notify_all();
    cv_ready.notify_all();
    for (auto& w : workers) w.join();
    for (auto& s : slots) {
      s.batch.await_holds();
      o.release(s.buffer);
    }
  }

  // This rank's positions in global batch b: [lo, hi) of the epoch order.
  std::pair<int64_t, int64_t> shard(int64_t b, int64_t* global_n) const {
    return shard_of(b, static_cast<int64_t>(indices.size()), o, global_n);
  }

  void fill(Slot& slot, int64_t b, int ep, uint64_t gen) {
    Batch& batch = slot.batch;
    batch.index = b;
    batch.size = transform.settings().size;
    batch.channels = 3;
    batch.data = slot.buffer;
    batch.labels.clear();
    batch.targets.clear();
    batch.samples.clear();
    batch.skipped.clear();
    const auto [lo, hi] = shard(b, &batch.global_n);
    int64_t n = 0;
    for (int64_t p = lo; p < hi; ++p) {
      {
        std::lock_guard<std::mutex> lock(mu);
        if (generation != gen || stopping) return;
      }
      const int64_t sample = indices[static_cast<size_t>(order[static_cast<size_t>(p)])];
      float* out = slot.buffer + n * sample_floats;
      try {
        const bool cacheable = o.cache && !transform.settings().train;
        bool done = false;
        if (cacheable) {
          std::lock_guard<std::mutex> lock(cache_mu);
          if (auto it = cache.find(sample); it != cache.end()) {
            transform.normalise(it->second, out);
            done = true;
          }
        }
        if (!done) {
          Image img = transform.pixels(d, sample, ep);
          transform.normalise(img, out);
          if (cacheable) {
            std::lock_guard<std::mutex> lock(cache_mu);
            if (cache_used + img.px.size() <= o.cache_bytes) {
              cache_used += img.px.size();
              cache.emplace(sample, std::move(img));
            }
          }
        }
      } catch (const DecodeError& e) {
        const Sample& s = d.samples[static_cast<size_t>(sample)];
        Problem pr{s.id, s.paths.empty() ? "" : s.paths[0], e.what()};
        std::lock_guard<std::mutex> lock(mu);
        if (bad.insert(sample).second) problem_list.push_back(pr);
        batch.skipped.push_back(pr);
        continue;
      }
      append_sample(d, sample, batch);
      ++n;
    }
    batch.n = n;
  }

  void work() {
    std::unique_lock<std::mutex> lock(mu);
    while (true) {
      cv_work.wait(lock, [&] {
        if (stopping) return true;
        if (next_to_claim >= batches) return false;
        const Slot& s = slots[static_cast<size_t>(next_to_claim % o.prefetch)];
        return s.ready_for == -1 && !s.in_use && next_to_claim < next_to_deliver + o.prefetch;
      });
      if (stopping) return;
      const int64_t b = next_to_claim++;
      const uint64_t gen = generation;
      const int ep = epoch;
      Slot& slot = slots[static_cast<size_t>(b % o.prefetch)];
      slot.ready_for = -2;  // being filled
      lock.unlock();
      std::exception_ptr err;
      try {
        slot.batch.await_holds();  // an asynchronous copy of the slot's previous batch is done
        fill(slot, b, ep, gen);
      } catch (...) {
        err = std::current_exception();
      }
      lock.lock();
      if (generation != gen) {  // start_epoch came in meanwhile: the batch is stale
        slot.ready_for = -1;
        cv_work.notify_all();
        cv_ready.notify_all();
        continue;
      }
      if (err && !error) error = err;
      slot.ready_for = b;
      cv_ready.notify_all();
    }
  }

  void start(int ep, int64_t first) {
    std::unique_lock<std::mutex> lock(mu);
    ++generation;
    // Wait until no worker is filling a slot of the old generation, then clear them.
    cv_work.notify_all();
    cv_ready.wait(lock, [&] {
      for (const auto& s : slots)
        if (s.ready_for == -2) return false;
      return true;
    });
    for (auto& s : slots)
      if (!s.in_use) s.ready_for = -1;
    for (const auto& s : slots)
      if (s.in_use) throw Error("loader: start_epoch while a batch of the previous epoch is still held");
    epoch = ep;
    error = nullptr;
    tally = EpochTally{};
    order = epoch_order(static_cast<int64_t>(indices.size()), o.shuffle, o.seed, ep);
    next_to_claim = next_to_deliver = std::min(first, batches);
    cv_work.notify_all();
  }

  std::shared_ptr<const Batch> take() {
    std::unique_lock<std::mutex> lock(mu);
    if (next_to_deliver >= batches) return nullptr;
    const int64_t b = next_to_deliver;
    Slot& slot = slots[static_cast<size_t>(b % o.prefetch)];
    cv_ready.wait(lock, [&] { return slot.ready_for == b || stopping; });
    if (stopping) return nullptr;
    if (error) {
      auto e = error;
      error = nullptr;
      slot.ready_for = -1;
      std::rethrow_exception(e);
    }
    slot.in_use = true;
    ++next_to_deliver;
    tally.samples += slot.batch.n + static_cast<int64_t>(slot.batch.skipped.size());
    tally.usable += slot.batch.n;
    tally.skipped += static_cast<int64_t>(slot.batch.skipped.size());
    if (tally.first_skipped.empty() && !slot.batch.skipped.empty()) tally.first_skipped = slot.batch.skipped.front().reason;
    cv_work.notify_all();
    return std::shared_ptr<const Batch>(&slot.batch, [this, &slot](const Batch*) {
      std::lock_guard<std::mutex> l(mu);
      slot.in_use = false;
      slot.ready_for = -1;
      cv_work.notify_all();
    });
  }
};

Loader::Loader(const Dataset& d, std::vector<int64_t> indices, TransformSettings t, LoaderOptions o)
    : impl_(std::make_unique<Impl>(d, std::move(indices), std::move(t), std::move(o))) {}
Loader::~Loader() = default;
int64_t Loader::size() const { return static_cast<int64_t>(impl_->indices.size()); }
int64_t Loader::batches_per_epoch() const { return impl_->batches; }
void Loader::start_epoch(int epoch, int64_t first_batch) { impl_->start(epoch, first_batch); }
std::shared_ptr<const Batch> Loader::next() { return impl_->take(); }
std::vector<Problem> Loader::problems() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->problem_list;
}
EpochTally Loader::epoch_tally() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->tally;
}

size_t Loader::buffer_bytes() const {
  return impl_->slots.size() * impl_->sample_floats * impl_->max_shard * sizeof(float);
}

}  // namespace xfer::data
