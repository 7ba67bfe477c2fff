// metrics/radix_sort: a stable LSD radix sort of (uint64 key, uint32 payload) pairs as Kokkos kernels — the sort
// under ROC-AUC and threshold tuning. The input is cut into chunks (one per execution unit): one kernel
// histograms every digit of every chunk in a single read, then each pass scatters the chunks in parallel, each in
// order, so the sort is stable and deterministic on every backend. A pass whose digit is the same for every key
// is skipped.
#pragma once

#include <cstdint>
#include <cstring>

#include <Kokkos_Core.hpp>

namespace xfer::metrics::detail {

// Order-preserving map from double to uint64 (NaN excluded by the caller; -0.0 is folded into +0.0 so that the
// two compare equal, as they do as doubles).
KOKKOS_INLINE_FUNCTION uint64_t order_key(double d) {
  if (d == 0.0) d = 0.0;
  uint64_t u;
  std::memcpy(&u, &d, sizeof u);
  return (u & 0x8000000000000000ULL) ? ~u : (u | 0x8000000000000000ULL);
}

template <class Exec>
void radix_sort_pairs(Kokkos::View<uint64_t*, typename Exec::memory_space> keys,
                      Kokkos::View<uint32_t*, typename Exec::memory_space> values) {
  using Mem = typename Exec::memory_space;
  constexpr int kBits = 11;  // 6 passes; a chunk's histograms (6 × 2048 counters) stay in L1/L2
  constexpr int kBins = 1 << kBits;
  constexpr int kPasses = (64 + kBits - 1) / kBits;
  const int64_t n = static_cast<int64_t>(keys.extent(0));
  if (n < 2) return;
  int64_t chunks = Exec().concurrency();
  if (chunks > 256) chunks = 256;
  if (chunks > n / 16384 + 1) chunks = n / 16384 + 1;
  const int64_t chunk_len = (n + chunks - 1) / chunks;

  Kokkos::View<uint64_t*, Mem> keys_tmp(Kokkos::view_alloc(Kokkos::WithoutInitializing, "radix.keys"), n);
  Kokkos::View<uint32_t*, Mem> vals_tmp(Kokkos::view_alloc(Kokkos::WithoutInitializing, "radix.vals"), n);
  // hist(c, p * kBins + d): keys of chunk c whose digit p is d; later the first output slot for them.
  Kokkos::View<int64_t**, Kokkos::LayoutRight, Mem> hist("radix.hist", chunks, kPasses * kBins);
  const uint64_t* key_data = keys.data();
  int64_t* hist_data = hist.data();
  Kokkos::parallel_for(
      "xfer::radix::histogram", Kokkos::RangePolicy<Exec>(0, chunks), KOKKOS_LAMBDA(const int64_t c) {
        const int64_t b = c * chunk_len, e = b + chunk_len < n ? b + chunk_len : n;
        int64_t* __restrict__ h = hist_data + c * kPasses * kBins;
        const uint64_t* __restrict__ k = key_data;
        for (int64_t i = b; i < e; ++i) {
          const uint64_t key = k[i];
          for (int p = 0; p < kPasses; ++p) h[p * kBins + ((key >> (p * kBits)) & (kBins - 1))]++;
        }
      });
  auto src_k = keys;
  auto src_v = values;
  auto dst_k = keys_tmp;
  auto dst_v = vals_tmp;
  bool in_tmp = false;
  for (int p = 0; p < kPasses; ++p) {
    // Skip a pass where every key has the same digit.
    int64_t max_bin = 0;
    Kokkos::parallel_reduce(
        "xfer::radix::uniform", Kokkos::RangePolicy<Exec>(0, kBins),
        KOKKOS_LAMBDA(const int64_t d, int64_t& m) {
          int64_t s = 0;
          for (int64_t c = 0; c < chunks; ++c) s += hist(c, p * kBins + d);
          if (s > m) m = s;
        },
        Kokkos::Max<int64_t>(max_bin));
    if (max_bin == n) continue;
    // Exclusive scan in digit-major, chunk-minor order gives each (chunk, digit) its first output slot.
    Kokkos::parallel_scan(
        "xfer::radix::offsets", Kokkos::RangePolicy<Exec>(0, kBins * chunks),
        KOKKOS_LAMBDA(const int64_t j, int64_t& acc, const bool final) {
          const int64_t d = j / chunks, c = j % chunks;
          const int64_t count = hist(c, p * kBins + d);
          if (final) hist(c, p * kBins + d) = acc;
          acc += count;
        });
    const uint64_t* sk = src_k.data();
    const uint32_t* sv = src_v.data();
    uint64_t* dk = dst_k.data();
    uint32_t* dv = dst_v.data();
    const int shift = p * kBits;
    Kokkos::parallel_for(
        "xfer::radix::scatter", Kokkos::RangePolicy<Exec>(0, chunks), KOKKOS_LAMBDA(const int64_t c) {
          const int64_t b = c * chunk_len, e = b + chunk_len < n ? b + chunk_len : n;
          int64_t* __restrict__ h = hist_data + c * kPasses * kBins + p * kBins;
          const uint64_t* __restrict__ in_k = sk;
          const uint32_t* __restrict__ in_v = sv;
          uint64_t* __restrict__ out_k = dk;
          uint32_t* __restrict__ out_v = dv;
          for (int64_t i = b; i < e; ++i) {
            const uint64_t key = in_k[i];
            const int64_t at = h[(key >> shift) & (kBins - 1)]++;
            out_k[at] = key;
            out_v[at] = in_v[i];
          }
        });
    std::swap(src_k, dst_k);
    std::swap(src_v, dst_v);
    in_tmp = !in_tmp;
  }
  if (in_tmp) {
    Kokkos::deep_copy(keys, src_k);
    Kokkos::deep_copy(values, src_v);
  }
}

}  // namespace xfer::metrics::detail
