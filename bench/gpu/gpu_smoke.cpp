// gpu_smoke: the trainer's CUDA paths checked one by one on the first GPU machine, from LibTorch and NCCL alone (no
// MPI, HDF5 or OpenCV: bench/gpu/CMakeLists.txt compiles the few sources it needs). Each check prints one line
// "ok|FAIL name: detail"; --json writes them all. Exit status 1 when any failed.
//   fused optimizers   fused SGD (momentum 0, 0.9, 0.9 Nesterov) and fused AdamW against torch::optim, 3 steps (C1)
//   autocast           model::set_autocast: a Linear's logits are bf16 under it (CUDA), float32 after it is off
//   bucketed exchange  a 1-rank bucketed exchange through the post-accumulate hooks (NCCL on CUDA) gives the plain
//                      gradients, sums started during backward
//   unscale            GradScaler's kernel over the exchange's buckets: gradients ÷ scale, an inf found
//   abandoned attempt  destroying an exchange whose attempt was left open returns (a watchdog: 30 s)
//   out of memory      (CUDA) an allocation too large throws c10::OutOfMemoryError, autocast state restored after
//   gpu_smoke [--cpu] [--device cuda:0] [--json FILE]
// --cpu runs the same checks on the CPU where they apply (./run test runs it, so the plumbing cannot rot); the
// reducer is then the in-process group's instead of NCCL.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <limits>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <torch/torch.h>
#include <torch/version.h>

#include "gradient_exchange.hpp"
#include "optimizer_parity.hpp"
#include "xfer/model/classifier.hpp"

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

std::string out_of_memory(const torch::Device& dev) {
  model::set_autocast(true, at::kBFloat16);
  bool caught = false;
  try {
    auto t = torch::empty({int64_t(1) << 50}, torch::TensorOptions().dtype(torch::kFloat).device(dev));
  } catch (const c10::OutOfMemoryError&) {
    caught = true;
  }
  model::set_autocast(false, at::kBFloat16);
  // Still usable after it: a step's worth of work runs, outside autocast.
  torch::nn::Linear head(16, 10);
  head->to(dev);
  const auto dtype = head->forward(torch::randn({4, 16}).to(dev)).scalar_type();
  const std::string what = std::string(caught ? "c10::OutOfMemoryError caught" : "no OutOfMemoryError") +
                           ", then logits " + c10::toString(dtype);
  if (!caught || dtype != at::kFloat) return "FAIL: " + what;
  return what;
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
  if (dev.is_cuda()) check("out of memory", [&] { return out_of_memory(dev); });
  if (!json.empty()) write_json(json, device);
  for (const auto& r : results)
    if (!r.ok) return 1;
  return 0;
}
