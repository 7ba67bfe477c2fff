// model: a TorchScript backbone (features out) plus a fresh linear head sized to the dataset — the network every
// trial fine-tunes — and its device placement. Torch appears in this module and in train/ only.
// Knows nothing of datasets, metrics, MPI or HDF5.
#pragma once

#include <string>
#include <vector>

#include <torch/script.h>
#include <torch/nn/modules/linear.h>

namespace xfer::model {

class Classifier {
 public:
  // Loads the backbone, finds its feature dimension by a dry forward pass of 2 × 3 × input_size² zeros, and
  // attaches Linear(D, num_classes) initialised from `seed` (torch's default init, as nn.Linear in the paper's
  // code). Throws xfer::Error (input) naming the file when it is not TorchScript, when its output is not [N, D],
  // or when it rejects input_size (a fixed-size architecture given another size).
  Classifier(const std::string& backbone_path, int input_size, int num_classes, uint64_t seed);

  torch::Tensor forward(const torch::Tensor& x);
  void train(bool on);
  void to(const torch::Device& device);
  // Convolution weights and inputs in channels-last (NHWC) layout: oneDNN on CPU and tensor cores on CUDA run
  // convolutions faster in it (+14–95 % per training step on CPU here, bench/trainer). Values are unchanged; only
  // the memory layout differs. Call after to() and before building the optimizer.
  void set_channels_last(bool on);
  std::vector<torch::Tensor> parameters();
  // Backbone then head, by name, for checkpoints: parameters and buffers (BatchNorm statistics).
  std::vector<std::pair<std::string, torch::Tensor>> state();
  // The backbone with its current weights, on the CPU, as a TorchScript file (an upstream stage's pre-trained model).
  void save_backbone(const std::string& path);
  // Copies a head initialisation from a TorchScript module with `weight` and `bias` (parity tests).
  void load_head(const std::string& path);
  // Buffers only (BatchNorm running statistics): synchronised across a data-parallel group before evaluation.
  std::vector<torch::Tensor> buffers();

  int feature_dim() const { return feature_dim_; }
  int64_t parameter_count();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  torch::jit::Module backbone_;
  torch::nn::Linear head_{nullptr};
  int feature_dim_ = 0;
  bool channels_last_ = false;
};

// The device a rank trains on: "cpu", "cuda" (auto: one GPU per local rank) or "cuda:N". With "auto", CUDA when
// torch sees a GPU, each local rank bound to GPU (local_rank mod visible GPUs), else CPU.
torch::Device choose_device(const std::string& request, int local_rank);
std::string describe(const torch::Device& d);  // "cpu", "cuda:0 (NVIDIA H200, 139 GiB)"

// CPU training frees and re-allocates the same large activation buffers at every step. glibc hands buffers above
// its mmap threshold back to the kernel and trims the heap, so each step pays page faults to get them back (a fifth
// of the CPU time at 224 px here). This keeps freed memory in the heap instead: faster steps for a higher peak RSS
// (BENCHMARKS.md). Process-wide; returns whether it took effect (glibc only).
bool keep_host_memory();
// Returns the heap's free memory to the system (between trials).
void release_host_memory();

// CUDA autocast on or off (bf16 or fp16) around a forward pass, across the LibTorch 1.13 and 2.x APIs.
void set_autocast(bool on, at::ScalarType dtype);
// Whether CUDA autocast is on in this thread (thread-local state: an exception must not leave it on).
bool autocast_on();
// CUDA's fast paths for the whole process, each set on or off: TF32 for float32 matmuls and convolutions (off is
// float32, which LibTorch's default is not for convolutions), cuDNN's algorithm search.
void enable_cuda_fast_math(bool tf32, bool cudnn_benchmark);

}  // namespace xfer::model
