#include "device_input.hpp"

#include <cstring>

#include "xfer/core/error.hpp"
#include "xfer/data/numpy_random.hpp"

#if defined(XFER_TORCH_CUDA)
#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace xfer::train {

namespace {

// What a batch carries to the engine: its images, and on CUDA the event its copy stream recorded after them.
struct DeviceImages {
  torch::Tensor images;
#if defined(XFER_TORCH_CUDA)
  std::shared_ptr<at::cuda::CUDAEvent> ready;
#endif
};

}  // namespace

data::TransformSettings DeviceInput::cache_settings(const data::TransformSettings& t) {
  data::TransformSettings cached = t;
  if (t.train) cached.crop_pct = 1.0;  // training crops are drawn from the whole square at the input size
  return cached;
}

DeviceInput::DeviceInput(const data::Dataset& d, std::vector<int64_t> indices, data::TransformSettings t,
                         data::LoaderOptions o, std::unique_ptr<data::PixelCache> cache, const torch::Device& device)
    : d_(d), indices_(std::move(indices)), t_(std::move(t)), o_(std::move(o)), device_(device), cache_(std::move(cache)) {
  if (o_.batch_size < 1) throw Error::input("device input: batch_size must be ≥ 1");
  if (!cache_ || cache_->size() != size() || cache_->side() != t_.size)
    throw Error("device input: the cache does not hold this split at " + std::to_string(t_.size) + " px");
  batches_ = data::batches_in_epoch(size(), o_);
  const data::Transform host(t_);
  const auto& table = host.normalisation_table();
  lut_ = torch::from_blob(const_cast<float*>(table[0].data()), {3 * 256}, torch::kFloat).clone().to(device_);
  mean_ = torch::tensor(std::vector<float>(t_.mean.begin(), t_.mean.end())).view({1, 3, 1, 1}).to(device_);
  std_ = torch::tensor(std::vector<float>(t_.std.begin(), t_.std.end())).view({1, 3, 1, 1}).to(device_);
  next_ = batches_;  // no epoch started
#if defined(XFER_TORCH_CUDA)
  if (device_.is_cuda())
    stream_ = std::make_shared<c10::cuda::CUDAStream>(c10::cuda::getStreamFromPool(false, device_.index()));
#endif
}

DeviceInput::~DeviceInput() {
  if (ahead_.valid()) ahead_.wait();
}

const torch::Tensor& DeviceInput::images(const data::Batch& b) {
  auto* d = static_cast<DeviceImages*>(b.device_images.get());
#if defined(XFER_TORCH_CUDA)
  // The consumer's stream waits for the copy stream's work on this batch; the allocator learns the images are used
  // there, so their memory is not handed back to the copy stream too early.
  if (d->ready && d->images.is_cuda()) {
    auto current = c10::cuda::getCurrentCUDAStream(d->images.device().index());
    d->ready->block(current);
    c10::cuda::CUDACachingAllocator::recordStream(d->images.storage().data_ptr(), current);
  }
#endif
  return d->images;
}

void DeviceInput::start_epoch(int epoch, int64_t first_batch) {
  if (ahead_.valid()) ahead_.wait();
  ahead_ = {};
  epoch_ = epoch;
  order_ = data::epoch_order(size(), o_.shuffle, o_.seed, epoch);
  next_ = std::min(first_batch, batches_);
  std::lock_guard<std::mutex> lock(mu_);
  tally_ = data::EpochTally{};
}

torch::Tensor DeviceInput::transform(const torch::Tensor& px, const std::vector<int64_t>& samples, int epoch) const {
  const int64_t k = px.size(0), S = px.size(1);
  if (!t_.train) {
    // The host loader's table, looked up: bit for bit its normalisation. NHWC indices → NCHW channels-last view.
    auto idx = px.to(torch::kLong) + torch::arange(3, torch::TensorOptions().dtype(torch::kLong).device(device_)) * 256;
    return lut_.index_select(0, idx.reshape({-1})).view({k, S, S, 3}).permute({0, 3, 1, 2});
  }
  // RandomResizedCrop + flips as affine sampling grids (align_corners = false: pixel centres), one per sample; the
  // box and the flips drawn exactly as data::Transform draws them, from (seed, epoch, sample).
  std::vector<float> theta(static_cast<size_t>(k) * 6);
  for (int64_t i = 0; i < k; ++i) {
    data::Rng rng = data::Rng::derive(t_.seed, static_cast<uint64_t>(epoch), static_cast<uint64_t>(samples[i]));
    const auto box = data::random_resized_crop_box(static_cast<int>(S), static_cast<int>(S), t_.scale_lo, t_.scale_hi,
                                                   t_.ratio_lo, t_.ratio_hi, rng);
    float fx = 1, fy = 1;
    if (t_.flips == Flips::h || t_.flips == Flips::hv)
      if (rng.uniform() < 0.5) fx = -1;
    if (t_.flips == Flips::hv)
      if (rng.uniform() < 0.5) fy = -1;
    const float s = static_cast<float>(S);
    float* th = theta.data() + 6 * i;
    th[0] = fx * box.width / s, th[1] = 0, th[2] = (2.0f * box.left + box.width) / s - 1.0f;
    th[3] = 0, th[4] = fy * box.height / s, th[5] = (2.0f * box.top + box.height) / s - 1.0f;
  }
  auto th = torch::from_blob(theta.data(), {k, 2, 3}, torch::kFloat).to(device_);
  auto x = px.permute({0, 3, 1, 2}).to(torch::kFloat);
  auto grid = torch::nn::functional::affine_grid(th, {k, 3, S, S}, /*align_corners=*/false);
  auto y = torch::nn::functional::grid_sample(x, grid,
                                              torch::nn::functional::GridSampleFuncOptions()
                                                  .mode(torch::kBilinear)
                                                  .padding_mode(torch::kBorder)
                                                  .align_corners(false));
  return ((y / 255.0f - mean_) / std_).contiguous(at::MemoryFormat::ChannelsLast);
}

std::shared_ptr<data::Batch> DeviceInput::make(int64_t b, int epoch) {
  auto batch = std::make_shared<data::Batch>();
  batch->index = b;
  batch->size = cache_->side();
  batch->channels = 3;
  const auto [lo, hi] = data::shard_of(b, size(), o_, &batch->global_n);
  std::vector<int64_t> positions;
  for (int64_t p = lo; p < hi; ++p) {
    const int64_t pos = order_[static_cast<size_t>(p)];
    const int64_t sample = indices_[static_cast<size_t>(pos)];
    if (!cache_->usable(pos)) {
      const data::Problem& pr = cache_->problem(pos);
      batch->skipped.push_back(pr);
      std::lock_guard<std::mutex> lock(mu_);
      if (bad_.insert(sample).second) problems_.push_back(pr);
      continue;
    }
    positions.push_back(pos);
    data::append_sample(d_, sample, *batch);
  }
  batch->n = static_cast<int64_t>(positions.size());
  auto holder = std::make_shared<DeviceImages>();
  if (batch->n > 0) {
    const int64_t S = cache_->side();
    auto host = torch::empty({batch->n, S, S, 3},
                             torch::TensorOptions().dtype(torch::kByte).pinned_memory(device_.is_cuda()));
    auto* dst = static_cast<uint8_t*>(host.data_ptr());
    const size_t bytes = cache_->image_bytes();
    for (size_t i = 0; i < positions.size(); ++i) std::memcpy(dst + i * bytes, cache_->image(positions[i]), bytes);
#if defined(XFER_TORCH_CUDA)
    if (device_.is_cuda()) {
      // On a copy stream: this batch's copy and transform overlap the previous batch's training.
      c10::cuda::CUDAGuard guard(device_);
      const auto& stream = *static_cast<c10::cuda::CUDAStream*>(stream_.get());
      c10::cuda::CUDAStreamGuard on(stream);
      holder->images = transform(host.to(device_, /*non_blocking=*/true), batch->samples, epoch);
      holder->ready = std::make_shared<at::cuda::CUDAEvent>();
      holder->ready->record(stream);
      // `host` may be freed now: the pinned-memory allocator keeps its block until the copy that reads it is done.
    } else
#endif
      holder->images = transform(host.to(device_), batch->samples, epoch);
  }
  batch->device_images = holder;
  return batch;
}

std::shared_ptr<const data::Batch> DeviceInput::next() {
  if (next_ >= batches_) return nullptr;
  const int64_t b = next_++;
  std::shared_ptr<data::Batch> batch = ahead_.valid() ? ahead_.get() : make(b, epoch_);
  if (next_ < batches_) ahead_ = std::async(std::launch::async, [this, nb = next_, ep = epoch_] { return make(nb, ep); });
  std::lock_guard<std::mutex> lock(mu_);
  tally_.samples += batch->n + static_cast<int64_t>(batch->skipped.size());
  tally_.usable += batch->n;
  tally_.skipped += static_cast<int64_t>(batch->skipped.size());
  if (tally_.first_skipped.empty() && !batch->skipped.empty()) tally_.first_skipped = batch->skipped.front().reason;
  return batch;
}

std::vector<data::Problem> DeviceInput::problems() const {
  std::lock_guard<std::mutex> lock(mu_);
  return problems_;
}

data::EpochTally DeviceInput::epoch_tally() const {
  std::lock_guard<std::mutex> lock(mu_);
  return tally_;
}

}  // namespace xfer::train
