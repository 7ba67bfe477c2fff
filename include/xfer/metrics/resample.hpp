// metrics/resample: the counter-based generator behind every bootstrap in xfer (metrics and the statistics
// module): resample b's draws depend only on (seed, b), so results do not depend on the backend or thread count.
#pragma once

#include <cstdint>

#include <Kokkos_Macros.hpp>

namespace xfer::metrics {

KOKKOS_INLINE_FUNCTION uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

// A uniform draw in [0, n) (Lemire's multiply-shift).
KOKKOS_INLINE_FUNCTION int64_t draw(uint64_t& state, int64_t n) {
  return static_cast<int64_t>((static_cast<unsigned __int128>(splitmix64(state)) * static_cast<uint64_t>(n)) >> 64);
}

}  // namespace xfer::metrics
