// The trainer's pure compute: xfer's model (a TorchScript backbone + a fresh Linear head, model::Classifier) trained
// with the paper's AdamW (weight_decay = wd / lr) on synthetic batches already on the device, through the trainer's
// own step (train/step.hpp: autocast, criterion, backward) — no loading, no evaluation. Built against LibTorch alone (bench/trainer/CMakeLists.txt), so it runs wherever a GPU and a LibTorch
// are: on CUDA it trains under bf16 autocast as xfer does and reports the fraction of the GPU's peak.
//
//   compute_bench --backbone resnet18.pt --size 224 --batch 128 --steps 20 [--device auto|cpu|cuda]
//                 [--precision fp32|bf16] [--threads N] [--gmacs G --peak-tflops P] [--contiguous] [--system-malloc]
//
// --contiguous and --system-malloc turn off what the trainer does beyond plain LibTorch (channels-last, keeping freed
// host memory), for a like-for-like comparison with PyTorch.
//
// Prints one JSON line: images/s, seconds per step, peak memory (CUDA allocator, or peak RSS on the CPU), achieved
// TFLOP/s (≈ 3 × 2 × GMACs per image: forward plus a backward of twice its cost) and the fraction of the given peak.
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>

#include <torch/torch.h>
#include <torch/version.h>
#if __has_include(<c10/cuda/CUDACachingAllocator.h>) && defined(XFER_TORCH_CUDA)
#include <c10/cuda/CUDACachingAllocator.h>
#define XFER_HAVE_CUDA_STATS 1
#endif

#include "fused_optimizer.hpp"
#include "step.hpp"
#include "xfer/core/error.hpp"
#include "xfer/model/classifier.hpp"
#include "xfer/train/precision.hpp"

namespace {

struct Args {
  std::string backbone, device = "auto", precision = "auto";
  int size = 224, batch = 128, steps = 20, warmup = 3, threads = 0, classes = 10;
  double gmacs = 0, peak_tflops = 0;
  bool channels_last = true;  // as the trainer does; --contiguous to compare
  bool keep_host_memory = true;  // as the trainer does on CPU; --system-malloc to compare
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) throw std::runtime_error(k + " needs a value");
      return argv[++i];
    };
    if (k == "--backbone") a.backbone = next();
    else if (k == "--size") a.size = std::stoi(next());
    else if (k == "--batch") a.batch = std::stoi(next());
    else if (k == "--steps") a.steps = std::stoi(next());
    else if (k == "--warmup") a.warmup = std::stoi(next());
    else if (k == "--threads") a.threads = std::stoi(next());
    else if (k == "--classes") a.classes = std::stoi(next());
    else if (k == "--device") a.device = next();
    else if (k == "--precision") a.precision = next();
    else if (k == "--gmacs") a.gmacs = std::stod(next());
    else if (k == "--peak-tflops") a.peak_tflops = std::stod(next());
    else if (k == "--contiguous") a.channels_last = false;
    else if (k == "--system-malloc") a.keep_host_memory = false;
    else throw std::runtime_error("unknown argument " + k);
  }
  if (a.backbone.empty()) throw std::runtime_error("--backbone is required");
  return a;
}

void sync(const torch::Device& d) {
  if (d.is_cuda()) torch::cuda::synchronize(d.index());
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Args a = parse(argc, argv);
    if (a.threads > 0) torch::set_num_threads(a.threads);
    const torch::Device device = xfer::model::choose_device(a.device, 0);
    // The trainer's own precision plan (train/precision.hpp): bf16 autocast, TF32, cuDNN benchmark and the fused
    // optimizer on CUDA; float32 and torch::optim on the CPU.
    const auto plan = xfer::train::plan_precision(a.precision == "fp32"   ? xfer::Precision::fp32
                                                  : a.precision == "fp16" ? xfer::Precision::fp16
                                                                          : xfer::Precision::bf16,
                                                  device.is_cuda(), xfer::train::fused_optimizer_available());
    const bool amp = plan.autocast;
    xfer::model::enable_cuda_fast_math(plan.tf32, plan.cudnn_benchmark);
    if (!device.is_cuda() && a.keep_host_memory) xfer::model::keep_host_memory();
    xfer::model::Classifier model(a.backbone, a.size, a.classes, 0);
    model.to(device);
    model.set_channels_last(a.channels_last);
    model.train(true);
    const double lr = 1e-3, wd = 1e-4;
    auto params = model.parameters();
    torch::optim::AdamW opt(params, torch::optim::AdamWOptions(lr).weight_decay(wd / lr));
    xfer::train::FusedAdamWState fused;
    torch::manual_seed(0);
    const auto x = torch::randn({a.batch, 3, a.size, a.size}).to(device);
    const auto y = torch::randint(0, a.classes, {a.batch}, torch::kInt);
    xfer::data::Batch batch;  // the labels; the images are `x`, already on the device
    batch.n = batch.global_n = a.batch;
    batch.size = a.size;
    batch.labels.assign(y.data_ptr<int32_t>(), y.data_ptr<int32_t>() + a.batch);
    xfer::train::StepSettings settings;
    settings.criterion.classes = a.classes;
    settings.criterion.device = device;
    settings.autocast = amp;
    settings.autocast_dtype = plan.bf16 ? at::kBFloat16 : at::kHalf;
    auto step = [&] {
      for (auto& p : params)
        if (p.grad().defined()) p.mutable_grad().zero_();
      xfer::train::forward_backward(model, batch, x, settings);
      if (plan.fused_optimizer) xfer::train::fused_adamw_step(opt, params, lr, 0.9, 0.999, wd / lr, 1e-8, fused);
      else opt.step();
    };
    for (int i = 0; i < a.warmup; ++i) step();
    sync(device);
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < a.steps; ++i) step();
    sync(device);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double ips = a.batch * a.steps / s;
    // Peak memory: the CUDA allocator's on a GPU, the process's peak RSS on the CPU.
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    int64_t peak = static_cast<int64_t>(ru.ru_maxrss) * 1024;
#ifdef XFER_HAVE_CUDA_STATS
    if (device.is_cuda()) {
      const auto st = c10::cuda::CUDACachingAllocator::getDeviceStats(device.index());
      peak = st.allocated_bytes[0].peak;
    }
#endif
    const double tflops = a.gmacs > 0 ? ips * a.gmacs * 2 * 3 / 1e3 : 0;
    std::printf("{\"side\": \"xfer\", \"device\": \"%s\", \"precision\": \"%s\", \"layout\": \"%s\", \"torch\": \"%s\", \"threads\": %d, "
                "\"size\": %d, \"batch\": %d, \"steps\": %d, \"images_per_second\": %.3f, \"seconds_per_step\": %.5f, "
                "\"malloc\": \"%s\", \"peak_memory_bytes\": %lld, \"tflops\": %.3f, \"fraction_of_peak\": %.4f, "
                "\"fused_optimizer\": %s}\n",
                device.str().c_str(), amp ? "bf16" : "fp32", a.channels_last ? "channels_last" : "contiguous", TORCH_VERSION, torch::get_num_threads(), a.size, a.batch,
                a.steps, ips, s / a.steps, device.is_cuda() ? "n/a" : a.keep_host_memory ? "keep" : "system", static_cast<long long>(peak), tflops,
                a.peak_tflops > 0 ? tflops / a.peak_tflops : 0.0, plan.fused_optimizer ? "true" : "false");
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "compute_bench: %s\n", e.what());
    return 1;
  }
}
