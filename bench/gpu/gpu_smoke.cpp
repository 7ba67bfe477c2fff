// gpu_smoke: the trainer's CUDA paths checked one by one on the first GPU machine, from LibTorch and NCCL alone (no
// MPI, HDF5 or OpenCV: bench/gpu/CMakeLists.txt compiles the few sources it needs). Each check prints one line
// "ok|FAIL name: detail"; --json writes them all. Exit status 1 when any failed.
//   fused optimizers   fused SGD (momentum 0, 0.9, 0.9 Nesterov) and fused AdamW against torch::optim, 3 steps (C1)
//   autocast           model::set_autocast: a Linear's logits are bf16 under it (CUDA), float32 after it is off
//   bucketed exchange  a 1-rank bucketed exchange through the post-accumulate hooks (NCCL on CUDA) gives the plain
//                      gradients, sums started during backward
//   unscale            GradScaler's kernel over the exchange's buckets: gradients ÷ scale, an inf found
//   abandoned attempt  destroying an exchange whose attempt was left open returns (a watchdog: 30 s)
//   device input       the device input pipeline on a synthetic cache in the real format: evaluation batches bit for
//                      bit the host loader's normalisation, in its order; training crops as on the CPU; pinned memory
//                      within the S3 bound (CUDA)
//   out-of-memory retry  the trainer's step, OOM classification and retry policy (twice the micro-batches) on a real
//                      allocation failure (CUDA: the caching allocator capped; CPU: an allocator cap injected through
//                      c10::SetCPUAllocator); autocast off after it, and training goes on
//   gpu_smoke [--cpu] [--device cuda:0] [--json FILE]
// --cpu runs the same checks on the CPU where they apply (./run test runs it, so the plumbing cannot rot); the
// reducer is then the in-process group's instead of NCCL.
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

#include <torch/script.h>
#include <torch/torch.h>
#include <torch/version.h>
#if defined(XFER_TORCH_CUDA)
#include <ATen/core/CachingHostAllocator.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDACachingAllocator.h>
#endif

#include "capped_cpu_allocator.hpp"
#include "device_input.hpp"
#include "gradient_exchange.hpp"
#include "step.hpp"
#include "optimizer_parity.hpp"
#include "xfer/model/classifier.hpp"
#include "xfer/train/oom_policy.hpp"

namespace {

using namespace xfer;

struct Result {
  std::string name;
  bool ok;
  std::string detail;
};
std::vector<Result> results;

void check(const std::string& name, const std::function<std::string()>& body) {
  Result r{name, true, ""};
  try {
    r.detail = body();
  } catch (const std::exception& e) {
    r.ok = false;
    r.detail = e.what();
    const auto nl = r.detail.find('\n');
    if (nl != std::string::npos) r.detail.resize(nl);
  }
  if (r.detail.rfind("FAIL: ", 0) == 0) {
    r.ok = false;
    r.detail.erase(0, 6);
  }
  std::printf("%s %s: %s\n", r.ok ? "ok  " : "FAIL", r.name.c_str(), r.detail.c_str());
  std::fflush(stdout);
  results.push_back(r);
}

std::string fmt(double v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

// A small network whose parameters fill several buckets (first bucket 1 KiB, then 4 KiB).
torch::nn::Sequential network() {
  torch::manual_seed(3);
  return torch::nn::Sequential(torch::nn::Conv2d(torch::nn::Conv2dOptions(3, 8, 3).padding(1)), torch::nn::ReLU(),
                               torch::nn::Conv2d(torch::nn::Conv2dOptions(8, 8, 3).padding(1)), torch::nn::ReLU(),
                               torch::nn::AdaptiveAvgPool2d(1), torch::nn::Flatten(), torch::nn::Linear(8, 10));
}

std::vector<torch::Tensor> trainable(torch::nn::Sequential& net) { return net->parameters(); }

torch::Tensor loss_of(torch::nn::Sequential& net, const torch::Device& dev, double scale = 1.0) {
  torch::manual_seed(11);
  const auto x = torch::randn({4, 3, 8, 8}).to(dev);
  const auto y = torch::randint(0, 10, {4}, torch::TensorOptions().dtype(torch::kLong)).to(dev);
  return torch::nn::functional::cross_entropy(net->forward(x), y) * scale;
}

std::unique_ptr<train::BucketReducer> reducer(train::Group& solo, const torch::Device& dev) {
  return dev.is_cuda() ? train::nccl_reducer(solo, dev) : train::group_reducer(solo, dev);
}

const train::BucketOptions small_buckets{1 << 10, 4 << 10, true};

std::string exchange_equals_plain_gradients(const torch::Device& dev) {
  auto plain = network(), bucketed = network();
  plain->to(dev);
  bucketed->to(dev);
  loss_of(plain, dev).backward();
  train::SoloGroup solo;
  train::BucketedGradientExchange ex(trainable(bucketed), reducer(solo, dev), small_buckets);
  ex.zero_gradients();
  ex.before_backward(true);
  loss_of(bucketed, dev).backward();
  ex.finish();
  double diff = 0;
  auto a = trainable(plain), b = trainable(bucketed);
  for (size_t i = 0; i < a.size(); ++i) diff = std::max(diff, (a[i].grad() - b[i].grad()).abs().max().item<double>());
  const std::string what = ex.describe() + ", " + std::to_string(ex.sums_started_during_backward()) +
                           " sums started during backward, max |difference| " + fmt(diff);
  if (ex.buckets() < 2 || ex.sums_started_during_backward() < 1 || diff > 1e-6) return "FAIL: " + what;
  return what;
}

std::string unscale_kernel(const torch::Device& dev) {
  const double scale = 1024;
  auto net = network();
  net->to(dev);
  train::SoloGroup solo;
  train::BucketedGradientExchange ex(trainable(net), reducer(solo, dev), small_buckets);
  ex.zero_gradients();
  ex.before_backward(true);
  loss_of(net, dev, scale).backward();
  ex.finish();
  auto grads = ex.gradient_storage();
  std::vector<torch::Tensor> expected;
  for (const auto& g : grads) expected.push_back(g / scale);
  const auto f32 = torch::TensorOptions().dtype(torch::kFloat).device(dev);
  auto found_inf = torch::zeros({1}, f32);
  at::_amp_foreach_non_finite_check_and_unscale_(grads, found_inf, torch::full({1}, 1.0 / scale, f32));
  double diff = 0;
  for (size_t i = 0; i < grads.size(); ++i) diff = std::max(diff, (grads[i] - expected[i]).abs().max().item<double>());
  grads.front()[0] = std::numeric_limits<float>::infinity();
  auto found_inf2 = torch::zeros({1}, f32);
  at::_amp_foreach_non_finite_check_and_unscale_(grads, found_inf2, torch::full({1}, 1.0, f32));
  const std::string what = std::to_string(grads.size()) + " buckets unscaled, max |difference| " + fmt(diff) +
                           ", found_inf " + fmt(found_inf.item<float>()) + " then " + fmt(found_inf2.item<float>()) +
                           " after an inf";
  if (diff > 1e-9 || found_inf.item<float>() != 0 || found_inf2.item<float>() != 1) return "FAIL: " + what;
  return what;
}

std::string autocast_logits(const torch::Device& dev) {
  torch::nn::Linear head(16, 10);
  head->to(dev);
  const auto x = torch::randn({4, 16}).to(dev);
  model::set_autocast(true, at::kBFloat16);
  const auto under = head->forward(x).scalar_type();
  model::set_autocast(false, at::kBFloat16);
  const auto after = head->forward(x).scalar_type();
  // CUDA autocast does not touch CPU tensors: on the CPU the logits stay float32 either way.
  const auto want = dev.is_cuda() ? at::kBFloat16 : at::kFloat;
  const std::string what = std::string("logits ") + c10::toString(under) + " under autocast, " + c10::toString(after) +
                           " after";
  if (under != want || after != at::kFloat) return "FAIL: " + what;
  return what;
}

// An attempt left open (hooks armed, sums started, no finish()), then the exchange destroyed — on a watchdog: on CUDA
// with NCCL the destruction must not hang behind unmatched collectives (gpu-review H1).
std::string abandoned_attempt(const torch::Device& dev) {
  std::mutex m;
  std::condition_variable cv;
  bool done = false;
  std::string error;
  std::thread t([&] {
    try {
      auto net = network();
      net->to(dev);
      train::SoloGroup solo;
      auto ex = std::make_unique<train::BucketedGradientExchange>(trainable(net), reducer(solo, dev), small_buckets);
      ex->zero_gradients();
      ex->before_backward(true);
      loss_of(net, dev).backward();
      ex.reset();
      if (dev.is_cuda()) torch::cuda::synchronize();
    } catch (const std::exception& e) {
      error = e.what();
    }
    std::lock_guard<std::mutex> l(m);
    done = true;
    cv.notify_all();
  });
  std::unique_lock<std::mutex> l(m);
  if (!cv.wait_for(l, std::chrono::seconds(30), [&] { return done; })) {
    std::printf("FAIL abandoned attempt: the exchange's destruction hangs (30 s)\n");
    std::fflush(stdout);
    std::quick_exit(1);  // the hung thread cannot be joined
  }
  l.unlock();
  t.join();
  if (!error.empty()) return "FAIL: " + error;
  return "destroyed with an attempt open, returned";
}

// The device input pipeline (train/device_input) on a synthetic cache written in the real format
// (data::PixelCache::write: header, checksum, flags, one undecodable position): evaluation batches bit for bit the
// host loader's normalisation (data::Transform::normalise) of the same cached pixels, in the host loader's order and
// shards (data::epoch_order, shard_of), the undecodable sample skipped and reported once; training batches (random
// crops and flips on the device) equal to the same pipeline's on the CPU; on CUDA, the pinned host memory it holds
// within the S3 bound (gpu-review): a few blocks of one batch each, not a slot per thread for every split.
std::string device_input_pipeline(const torch::Device& dev) {
  const int side = 48, classes = 5;
  const int64_t n = 45, bad = 7;
  data::Dataset d;
  d.name = d.kind = "synthetic";
  for (int c = 0; c < classes; ++c) d.class_names.push_back("c" + std::to_string(c));
  std::vector<int64_t> indices;
  for (int64_t i = 0; i < n; ++i) {
    data::Sample sample;
    sample.id = "s" + std::to_string(i);
    sample.label = static_cast<int32_t>(i % classes);
    d.samples.push_back(sample);
    d.split.push_back(data::Split::train);
    indices.push_back(i);
  }
  struct Folder {
    std::filesystem::path path;
    ~Folder() {
      std::error_code ec;
      std::filesystem::remove_all(path, ec);
    }
  } folder{std::filesystem::temp_directory_path() / ("gpu_smoke_cache_" + std::to_string(::getpid()))};
  const std::string path = (folder.path / "synthetic.u8").string();
  data::PixelCache::write(path, n, side, [&](int64_t p, uint8_t* rgb) -> std::optional<data::Problem> {
    if (p == bad) return data::Problem{d.samples[static_cast<size_t>(p)].id, "", "synthetic: undecodable"};
    for (size_t i = 0; i < size_t(side) * side * 3; ++i) rgb[i] = static_cast<uint8_t>((p * 131 + i * 7 + (i / 3) * 13) % 251);
    return std::nullopt;
  }, 2);
  auto open = [&] {
    std::string damage;
    auto cache = data::PixelCache::open(path, n, side, damage);
    if (!cache) throw std::runtime_error("the synthetic cache does not open: " + damage);
    return cache;
  };
  data::LoaderOptions o;
  o.batch_size = 16;
  o.shuffle = true;
  o.seed = 3;
  const size_t batch_bytes = size_t(o.batch_size) * side * side * 3;
#if defined(XFER_TORCH_CUDA) && (TORCH_VERSION_MAJOR > 2 || TORCH_VERSION_MINOR >= 9)
  auto pinned = [] { return at::getHostAllocator(at::kCUDA)->get_stats().allocated_bytes.current; };
#else
  auto pinned = [] { return int64_t(-1); };  // not measured: the CPU, or a LibTorch without host allocator stats
#endif
  const int64_t pinned_before = dev.is_cuda() ? pinned() : -1;

  data::TransformSettings eval;
  eval.size = side;
  train::DeviceInput evaluation(d, indices, eval, o, open(), dev);
  const data::Transform host(eval);
  const auto order = data::epoch_order(n, o.shuffle, o.seed, 0);
  double worst = 0;
  int64_t batches = 0, images = 0, skipped = 0;
  bool same_batches = true;
  evaluation.start_epoch(0);
  while (auto b = evaluation.next()) {
    int64_t global_n = 0;
    const auto [lo, hi] = data::shard_of(b->index, n, o, &global_n);
    std::vector<int64_t> want;
    std::vector<int32_t> labels;
    for (int64_t p = lo; p < hi; ++p)
      if (order[static_cast<size_t>(p)] != bad) {
        want.push_back(indices[static_cast<size_t>(order[static_cast<size_t>(p)])]);
        labels.push_back(d.samples[static_cast<size_t>(want.back())].label);
      }
    same_batches = same_batches && b->samples == want && b->labels == labels && b->global_n == global_n;
    skipped += static_cast<int64_t>(b->skipped.size());
    if (b->n == 0) continue;
    const auto got = train::DeviceInput::images(*b).to(torch::kCPU).contiguous();
    std::vector<float> expected(static_cast<size_t>(b->n) * 3 * side * side);
    for (int64_t k = 0; k < b->n; ++k) {
      data::Image img;
      img.rows = img.cols = side;
      img.channels = 3;
      const uint8_t* px = evaluation.cache().image(b->samples[static_cast<size_t>(k)]);  // position = sample here
      img.px.assign(px, px + evaluation.cache().image_bytes());
      host.normalise(img, expected.data() + static_cast<size_t>(k) * 3 * side * side);
    }
    const auto want_images = torch::from_blob(expected.data(), {b->n, 3, side, side}, torch::kFloat);
    worst = std::max(worst, (got - want_images).abs().max().item<double>());
    ++batches, images += b->n;
  }
  const auto problems = evaluation.problems();

  data::TransformSettings training = eval;
  training.train = true;
  training.flips = Flips::h;
  training.seed = 11;
  train::DeviceInput on_device(d, indices, training, o, open(), dev), on_cpu(d, indices, training, o, open(), torch::kCPU);
  on_device.start_epoch(1);
  on_cpu.start_epoch(1);
  double crops = 0;
  bool finite = true;
  while (auto a = on_device.next()) {
    const auto b = on_cpu.next();
    if (!b || a->samples != b->samples) return "FAIL: the training batches differ between the device and the CPU";
    if (a->n == 0) continue;
    const auto x = train::DeviceInput::images(*a).to(torch::kCPU), y = train::DeviceInput::images(*b);
    finite = finite && torch::isfinite(x).all().item<bool>();
    crops = std::max(crops, (x - y).abs().max().item<double>());
  }
  const int64_t pinned_after = dev.is_cuda() ? pinned() : -1;
  // Each batch is gathered into one pinned block, the next one while this one trains; the host allocator rounds a
  // block up to a power of two and keeps it: three of them at most.
  size_t block = 1;
  while (block < batch_bytes) block <<= 1;
  const int64_t bound = static_cast<int64_t>(3 * block), held = pinned_after - pinned_before;
  const std::string what =
      std::to_string(batches) + " evaluation batches, " + std::to_string(images) + " images, max |device - host| " +
      fmt(worst) + (same_batches ? ", the host loader's batches" : ", OTHER batches than the host loader's") + ", " +
      std::to_string(skipped) + " skipped (" + std::to_string(problems.size()) + " problem reported); training crops " +
      (dev.is_cuda() ? "against the CPU's" : "against themselves (CPU)") + ": max |difference| " + fmt(crops) +
      "; pinned memory held " + (pinned_before < 0 ? "not measured" : fmt(held / 1024.0) + " KiB of a bound of " +
                                                                        fmt(bound / 1024.0) + " KiB");
  const bool ok = same_batches && batches == 3 && images == n - 1 && worst == 0 && skipped == 1 &&
                  problems.size() == 1 && finite && crops < 1e-4 && (pinned_before < 0 || held <= bound);
  return ok ? what : "FAIL: " + what;
}

// A TorchScript backbone written here (no model of the zoo is on the GPU machine): two 3×3 convolutions of `width`
// channels and an average pool, so a step's activations grow with its micro-batch.
std::string write_backbone(const std::string& path, int width) {
  torch::manual_seed(5);
  torch::jit::Module m("SmokeBackbone");
  m.register_parameter("w1", torch::randn({width, 3, 3, 3}) * 0.2, false);
  m.register_parameter("w2", torch::randn({width, width, 3, 3}) * (1.0 / width), false);
  m.define(R"JIT(
def forward(self, x):
    y = torch.relu(torch.conv2d(x, self.w1, None, [1, 1], [1, 1]))
    y = torch.relu(torch.conv2d(y, self.w2, None, [1, 1], [1, 1]))
    return y.mean([2, 3])
)JIT");
  m.save(path);
  return path;
}

// The out-of-memory retry as the trainer runs it: train::forward_backward under bf16 autocast, the engine's
// classification (train::is_out_of_memory), the epoch loop's policy (train::retry_out_of_memory: twice the
// micro-batches, cached memory released between tries) — driven by a real allocation failure: on CUDA the caching
// allocator capped (setMemoryFraction) between what 4 micro-batches need and what 1 needs; on the CPU a cap injected
// through c10::SetCPUAllocator (capped_cpu_allocator.hpp). Afterwards autocast is off in the thread, and an update
// and a further step run.
std::string out_of_memory_retry(const torch::Device& dev) {
  const bool cuda = dev.is_cuda();
  const int64_t n = cuda ? 64 : 8, side = cuda ? 128 : 32;
  const int width = cuda ? 64 : 32, classes = 10;
  const std::string backbone =
      write_backbone((std::filesystem::temp_directory_path() / ("gpu_smoke_backbone_" + std::to_string(::getpid()) +
                                                                ".pt")).string(), width);
  model::Classifier net(backbone, static_cast<int>(side), classes, 7);
  std::filesystem::remove(backbone);
  net.to(dev);
  torch::optim::SGD opt(net.parameters(), torch::optim::SGDOptions(0.01));
  data::Batch b;
  b.n = b.global_n = n;
  b.size = static_cast<int>(side);
  for (int64_t i = 0; i < n; ++i) b.labels.push_back(static_cast<int32_t>(i % classes));
  torch::manual_seed(9);
  const auto x = torch::randn({n, 3, side, side}).to(dev);
  train::StepSettings st;
  st.criterion.classes = classes;
  st.criterion.device = dev;
  st.autocast = true;  // bf16 autocast, as a CUDA trial's "auto" precision
  st.autocast_dtype = at::kBFloat16;
  double loss = 0;
  std::vector<int> tried;
  bool autocast_after_oom = false;
  auto out_of_memory_at = [&](int micro) {
    tried.push_back(micro);
    opt.zero_grad();
    st.micro_batches = micro;
    try {
      loss = train::forward_backward(net, b, x, st).value();
      return false;
    } catch (const std::exception& e) {  // inside the TorchScript backbone an out-of-memory is a std::runtime_error
      if (!train::is_out_of_memory(e)) throw;
      autocast_after_oom = autocast_after_oom || model::autocast_on();
      return true;
    }
  };
  auto release = [&](int) {
#if defined(XFER_TORCH_CUDA)
    if (cuda) c10::cuda::CUDACachingAllocator::emptyCache();
#endif
  };
  std::string cap;
  int micro = 1;
  bool fits = false;
#if defined(XFER_TORCH_CUDA)
  if (cuda) {
    namespace alloc = c10::cuda::CUDACachingAllocator;
    const auto i = dev.has_index() ? dev.index() : c10::DeviceIndex(0);
    // What 4 micro-batches take above what is held now, then a cap of 3 × that: 1 micro-batch (about 4 ×) cannot fit,
    // 2 (about 2 ×) can.
    alloc::emptyCache();
    const auto held = alloc::getDeviceStats(i).allocated_bytes[0].current;
    alloc::resetPeakStats(i);
    if (out_of_memory_at(4)) return "FAIL: out of memory with 4 micro-batches and no cap";
    const auto step4 = alloc::getDeviceStats(i).allocated_bytes[0].peak - held;
    opt.zero_grad();
    alloc::emptyCache();
    tried.clear();
    const auto reserved = alloc::getDeviceStats(i).reserved_bytes[0].current;
    const double total = static_cast<double>(at::cuda::getDeviceProperties(i)->totalGlobalMem);
    const double limit = static_cast<double>(reserved) + 3.0 * static_cast<double>(step4);
    cap = "capped at " + fmt(limit / (1 << 20)) + " MiB (4 micro-batches took " + fmt(step4 / double(1 << 20)) +
          " MiB)";
    alloc::setMemoryFraction(limit / total, i);
    try {
      fits = train::retry_out_of_memory(micro, n, true, out_of_memory_at, [](bool f) { return f; }, release);
    } catch (...) {
      alloc::setMemoryFraction(1.0, i);
      throw;
    }
    alloc::setMemoryFraction(1.0, i);
    alloc::emptyCache();
  }
#endif
  if (!cuda) {
    const size_t limit = static_cast<size_t>(n) * width * side * side * sizeof(float) * 3 / 4;  // one conv output: 4/3 ×
    gpu_check::CpuMemoryCap capped(limit);
    if (!capped.installed()) return "FAIL: LibTorch kept its CPU allocator (a higher priority one is set)";
    cap = "allocations capped at " + fmt(limit / 1024.0) + " KiB (injected)";
    fits = train::retry_out_of_memory(micro, n, true, out_of_memory_at, [](bool f) { return f; }, release);
  }
  const bool after = model::autocast_on();
  std::string path;
  for (size_t k = 0; k < tried.size(); ++k) path += (k ? ", " : "") + std::to_string(tried[k]);
  const bool retried = tried.size() >= 2 && tried.front() == 1;
  // Training goes on: the update, then the next step at the micro-batches that fit.
  double next = std::numeric_limits<double>::quiet_NaN();
  if (fits) {
    opt.step();
    if (!out_of_memory_at(micro)) next = loss;
  }
  const std::string what = "micro-batches tried " + path + " (" + cap + "), autocast " +
                           (autocast_after_oom || after ? "ON" : "off") + " after the out-of-memory, next step's loss " +
                           fmt(next);
  const bool ok = fits && retried && micro > 1 && !autocast_after_oom && !after &&
                  std::isfinite(next);
  return ok ? what : "FAIL: " + what;
}

void write_json(const std::string& path, const std::string& device) {
  std::ofstream f(path);
  auto esc = [](std::string s) {
    std::string o;
    for (char c : s) {
      if (c == '"' || c == '\\') o += '\\';
      o += (c == '\n' ? ' ' : c);
    }
    return o;
  };
  f << "{\"device\": \"" << esc(device) << "\", \"torch\": \"" << TORCH_VERSION << "\", \"nccl\": "
    << (train::built_with_nccl() ? "true" : "false") << ", \"checks\": [";
  for (size_t i = 0; i < results.size(); ++i)
    f << (i ? ", " : "") << "{\"name\": \"" << esc(results[i].name) << "\", \"ok\": " << (results[i].ok ? "true" : "false")
      << ", \"detail\": \"" << esc(results[i].detail) << "\"}";
  f << "]}\n";
}

}  // namespace

int main(int argc, char** argv) {
  std::string device = "cuda:0", json;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--cpu") {
      device = "cpu";
    } else if (a == "--device" && i + 1 < argc) {
      device = argv[++i];
    } else if (a == "--json" && i + 1 < argc) {
      json = argv[++i];
    } else {
      std::fprintf(stderr, "usage: gpu_smoke [--cpu] [--device cuda:N] [--json FILE]\n");
      return 2;
    }
  }
  const torch::Device dev(device);
  if (dev.is_cuda() && !torch::cuda::is_available()) {
    std::fprintf(stderr, "gpu_smoke: torch sees no CUDA device (--cpu checks the plumbing without one)\n");
    return 2;
  }
  std::printf("gpu_smoke: LibTorch %s on %s, NCCL %s\n", TORCH_VERSION, device.c_str(),
              train::built_with_nccl() ? "built in" : "absent");
  if (!train::fused_optimizer_available()) {
    check("fused optimizers", [] { return std::string("FAIL: this LibTorch has no fused kernels (< 2.0)"); });
  } else {
    for (const auto& c : gpu_check::optimizer_cases())
      check("fused " + c.name, [&] {
        const auto r = gpu_check::compare_fused_optimizer(c, dev, 3);
        const std::string what = "max |param difference| " + fmt(r.max_parameter_difference) + ", state " +
                                 fmt(r.max_state_difference) + ", " + std::to_string(r.fused_states) + "/" +
                                 std::to_string(r.reference_states) + " states";
        const bool ok = r.max_parameter_difference < 1e-5 && r.max_state_difference < 1e-5 &&
                        r.fused_states == r.reference_states;
        return ok ? what : "FAIL: " + what;
      });
  }
  check("autocast", [&] { return autocast_logits(dev); });
  check("bucketed exchange", [&] { return exchange_equals_plain_gradients(dev); });
  check("unscale", [&] { return unscale_kernel(dev); });
  check("abandoned attempt", [&] { return abandoned_attempt(dev); });
  check("out-of-memory retry", [&] { return out_of_memory_retry(dev); });
  check("device input", [&] { return device_input_pipeline(dev); });
  if (!json.empty()) write_json(json, device);
  for (const auto& r : results)
    if (!r.ok) return 1;
  return 0;
}
