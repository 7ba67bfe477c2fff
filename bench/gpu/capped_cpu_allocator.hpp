// An out-of-memory on the CPU, injected through LibTorch's own allocator seam (c10::SetCPUAllocator): while a
// CappedCpuAllocator is installed, an allocation over `cap` bytes throws c10::OutOfMemoryError from wherever torch
// allocates it (inside a TorchScript forward pass, in backward), as CUDA's caching allocator does when the device is
// full. gpu_smoke --cpu and the unit tests drive the trainer's out-of-memory path with it.
#pragma once

#include <cstddef>

#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <c10/util/Exception.h>
#include <torch/version.h>

namespace xfer::gpu_check {

class CappedCpuAllocator final : public c10::Allocator {
 public:
  CappedCpuAllocator(c10::Allocator* inner, size_t cap) : inner_(inner), cap_(cap) {}
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 3)
  c10::DataPtr allocate(size_t n) override {
    check(n);
    return inner_->allocate(n);
  }
  void copy_data(void* dest, const void* src, std::size_t count) const override { inner_->copy_data(dest, src, count); }
#else
  c10::DataPtr allocate(size_t n) const override {
    check(n);
    return inner_->allocate(n);
  }
#endif
  c10::DeleterFnPtr raw_deleter() const override { return inner_->raw_deleter(); }

 private:
  void check(size_t n) const {
    TORCH_CHECK_WITH(OutOfMemoryError, n <= cap_, "out of memory (injected): ", n, " bytes over the cap of ", cap_);
  }
  c10::Allocator* inner_;
  size_t cap_;
};

// Installs a cap for its scope (false from installed() when a higher-priority CPU allocator keeps its place).
class CpuMemoryCap {
 public:
  explicit CpuMemoryCap(size_t cap) : before_(c10::GetCPUAllocator()), capped_(before_, cap) {
    c10::SetCPUAllocator(&capped_);
  }
  ~CpuMemoryCap() { c10::SetCPUAllocator(before_); }
  CpuMemoryCap(const CpuMemoryCap&) = delete;
  CpuMemoryCap& operator=(const CpuMemoryCap&) = delete;
  bool installed() const { return c10::GetCPUAllocator() == &capped_; }

 private:
  c10::Allocator* before_;
  CappedCpuAllocator capped_;
};

}  // namespace xfer::gpu_check
