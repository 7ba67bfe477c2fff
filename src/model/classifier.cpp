#include "xfer/model/classifier.hpp"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <torch/cuda.h>
#include <torch/version.h>
#include <torch/csrc/jit/runtime/graph_executor.h>
#include <torch/nn/init.h>

#include "xfer/core/error.hpp"

#include <ATen/Context.h>
#include <ATen/autocast_mode.h>

namespace xfer::model {

Classifier::Classifier(const std::string& backbone_path, int input_size, int num_classes, uint64_t seed)
    : path_(backbone_path) {
  // The profiling graph executor costs 10-15 % in training here (platform notes); plain interpretation is faster.
  torch::jit::setGraphExecutorOptimize(false);
  try {
    backbone_ = torch::jit::load(backbone_path, torch::kCPU);
  } catch (const c10::Error& e) {
    throw Error::input(backbone_path + ": not a TorchScript file that this LibTorch (" + std::string(TORCH_VERSION) +
                       ") can load — export it with tools/export_backbones.py (torch.jit.script + save) from a "
                       "PyTorch no newer than this LibTorch. Loader said: " + std::string(e.what_without_backtrace()).substr(0, 300));
  }
  backbone_.eval();
  // The whole network is fine-tuned (the paper's protocol), whatever requires_grad a file was saved with.
  for (auto p : backbone_.parameters()) p.set_requires_grad(true);
  torch::Tensor y;
  try {
    torch::NoGradGuard ng;
    y = backbone_.forward({torch::zeros({2, 3, input_size, input_size})}).toTensor();
  } catch (const c10::Error& e) {
    throw Error::input(backbone_path + ": the backbone rejects " + std::to_string(input_size) + "×" +
                       std::to_string(input_size) + " input (a fixed-size architecture? set input_size in its "
                       "[[model]] entry): " + std::string(e.what_without_backtrace()).substr(0, 300));
  } catch (const std::exception& e) {  // e.g. an exception raised by the scripted code itself
    throw Error::input(backbone_path + ": the backbone rejects " + std::to_string(input_size) + "×" +
                       std::to_string(input_size) + " input (a fixed-size architecture? set input_size in its "
                       "[[model]] entry): " + std::string(e.what()).substr(0, 300));
  }
  if (y.dim() != 2 || y.size(0) != 2) {
    std::string shape;
    for (auto s : y.sizes()) shape += (shape.empty() ? "" : ", ") + std::to_string(s);
    throw Error::input(backbone_path + ": backbone output is [" + shape +
                       "], expected [N, D] features (export the model with its classifier replaced by Identity)");
  }
  feature_dim_ = static_cast<int>(y.size(1));
  torch::manual_seed(seed);
  head_ = torch::nn::Linear(feature_dim_, num_classes);
}

void Classifier::save_backbone(const std::string& path) {
  torch::jit::Module copy = backbone_.clone();
  copy.to(torch::kCPU);
  copy.eval();
  // Plain (contiguous) weights: a channels-last copy would load with that layout everywhere. The parameters stay
  // trainable: the file is fine-tuned downstream like any exported backbone (a copy made under no_grad would load
  // frozen, and fine-tuning would train the head alone).
  for (auto p : copy.parameters()) {
    p.set_data(p.detach().contiguous());
    p.set_requires_grad(true);
  }
  for (auto b : copy.buffers()) b.set_data(b.detach().contiguous());
  copy.save(path);
}

torch::Tensor Classifier::forward(const torch::Tensor& x) {
  if (channels_last_ && x.dim() == 4)
    return head_->forward(backbone_.forward({x.contiguous(at::MemoryFormat::ChannelsLast)}).toTensor());
  return head_->forward(backbone_.forward({x}).toTensor());
}

void Classifier::set_channels_last(bool on) {
  const auto format = on ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  torch::NoGradGuard ng;
  for (auto p : backbone_.parameters())
    if (p.dim() == 4) p.set_data(p.contiguous(format));
  for (auto b : backbone_.buffers())
    if (b.dim() == 4) b.set_data(b.contiguous(format));
  channels_last_ = on;
}

void Classifier::train(bool on) {
  backbone_.train(on);
  head_->train(on);
}

void Classifier::to(const torch::Device& device) {
  backbone_.to(device);
  head_->to(device);
}

std::vector<torch::Tensor> Classifier::parameters() {
  std::vector<torch::Tensor> out;
  for (const auto& p : backbone_.parameters()) out.push_back(p);
  for (const auto& p : head_->parameters()) out.push_back(p);
  return out;
}

std::vector<torch::Tensor> Classifier::buffers() {
  std::vector<torch::Tensor> out;
  for (const auto& b : backbone_.buffers()) out.push_back(b);
  return out;
}

std::vector<std::pair<std::string, torch::Tensor>> Classifier::state() {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (const auto& p : backbone_.named_parameters()) out.emplace_back("backbone." + p.name, p.value);
  for (const auto& b : backbone_.named_buffers()) out.emplace_back("backbone." + b.name, b.value);
  for (const auto& p : head_->named_parameters()) out.emplace_back("head." + p.key(), p.value());
  return out;
}

void Classifier::load_head(const std::string& path) {
  torch::jit::Module m;
  try {
    m = torch::jit::load(path, torch::kCPU);
  } catch (const c10::Error& e) {
    throw Error::input(path + ": not a TorchScript head (a scripted nn.Linear is expected)");
  }
  torch::Tensor w, b;
  for (const auto& p : m.named_parameters()) {
    if (p.name == "weight") w = p.value;
    if (p.name == "bias") b = p.value;
  }
  if (!w.defined() || !b.defined() || w.sizes() != head_->weight.sizes() || b.sizes() != head_->bias.sizes())
    throw Error::input(path + ": head weight/bias shapes do not match Linear(" + std::to_string(feature_dim_) + ", " +
                       std::to_string(head_->weight.size(0)) + ")");
  torch::NoGradGuard ng;
  head_->weight.copy_(w);
  head_->bias.copy_(b);
}

int64_t Classifier::parameter_count() {
  int64_t n = 0;
  for (const auto& p : parameters()) n += p.numel();
  return n;
}

torch::Device choose_device(const std::string& request, int local_rank) {
  if (request == "cpu") return torch::Device(torch::kCPU);
  const bool cuda = torch::cuda::is_available();
  if (request.rfind("cuda", 0) == 0) {
    // The machine lacks it, not the trial: the sweep stops instead of failing every trial on this host.
    if (!cuda) throw Error::environment("device \"" + request + "\" requested but torch sees no CUDA device");
    if (request.size() > 5) return torch::Device(request);
  } else if (request != "auto") {
    throw Error::input("device \"" + request + "\": expected auto, cpu, cuda or cuda:N");
  }
  if (!cuda) return torch::Device(torch::kCPU);
  const int n = static_cast<int>(torch::cuda::device_count());
  return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(local_rank % n));
}

std::string describe(const torch::Device& d) { return d.str(); }

bool keep_host_memory() {
#if defined(__GLIBC__)
  // glibc before 2.35 caps the mmap threshold at 32 MiB (HEAP_MAX_SIZE / 2): fall back to that.
  const bool mmap_set = mallopt(M_MMAP_THRESHOLD, 1 << 30) == 1 || mallopt(M_MMAP_THRESHOLD, 32 << 20) == 1;
  const bool trim_set = mallopt(M_TRIM_THRESHOLD, 1 << 30) == 1;
  return mmap_set && trim_set;
#else
  return false;
#endif
}

void release_host_memory() {
#if defined(__GLIBC__)
  malloc_trim(0);
#endif
}

void enable_cuda_fast_math(bool tf32, bool cudnn_benchmark) {
  // Set both ways: these are process-wide, and a worker runs trials of different precisions one after another.
  auto& ctx = at::globalContext();
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 9)
  // The allow_tf32 setters are deprecated from 2.9 on in favour of the per-backend, per-operation precision.
  const auto p = tf32 ? at::Float32Precision::TF32 : at::Float32Precision::IEEE;
  ctx.setFloat32Precision(at::Float32Backend::CUDA, at::Float32Op::MATMUL, p);
  ctx.setFloat32Precision(at::Float32Backend::CUDA, at::Float32Op::CONV, p);
#else
  ctx.setAllowTF32CuBLAS(tf32);
  ctx.setAllowTF32CuDNN(tf32);
#endif
  ctx.setBenchmarkCuDNN(cudnn_benchmark);
}

void set_autocast(bool on, at::ScalarType dtype) {
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
  at::autocast::set_autocast_enabled(at::kCUDA, on);
  if (on) at::autocast::set_autocast_dtype(at::kCUDA, dtype);
#else
  at::autocast::set_enabled(on);
  if (on) at::autocast::set_autocast_gpu_dtype(dtype);
#endif
  if (!on) at::autocast::clear_cache();
}

bool autocast_on() {
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
  return at::autocast::is_autocast_enabled(at::kCUDA);
#else
  return at::autocast::is_enabled();
#endif
}

}  // namespace xfer::model
