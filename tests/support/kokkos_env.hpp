// Test support: Kokkos initialised once for a whole test binary (metrics::Runtime around all tests), for binaries
// that run the metrics or statistics kernels in-process. Include it in one source file of the binary.
#pragma once

#include <memory>

#include <gtest/gtest.h>

#include "xfer/metrics/metrics.hpp"

namespace xfer::test {

class KokkosEnvironment : public ::testing::Environment {
 public:
  void SetUp() override { runtime_ = std::make_unique<metrics::Runtime>(); }
  void TearDown() override { runtime_.reset(); }

 private:
  std::unique_ptr<metrics::Runtime> runtime_;
};

inline const auto* const kKokkosEnvironment = ::testing::AddGlobalTestEnvironment(new KokkosEnvironment);

}  // namespace xfer::test
