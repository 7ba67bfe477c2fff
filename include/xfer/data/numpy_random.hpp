// data/numpy_random: numpy's legacy RandomState, as far as the paper's splits use it — np.random.seed(int) and
// np.random.choice(a, size, replace=False) — reproduced bit for bit so xfer draws the same held-out sets.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace xfer::data {

class LegacyRandomState {
 public:
  // np.random.seed(s) for an integer s: MT19937 init_genrand(s).
  explicit LegacyRandomState(uint32_t seed);

  uint32_t next_uint32();  // genrand_int32
  // numpy's random_interval(max): a value in [0, max] by masked rejection (32-bit path for max < 2^32).
  uint64_t random_interval(uint64_t max);
  // np.random.permutation(n): arange(n) shuffled by Fisher–Yates from the end.
  std::vector<int64_t> permutation(int64_t n);
  // np.random.choice(a, size, replace=False) with p=None: a[permutation(len(a))[:size]]. The whole permutation is
  // drawn even when size is 0, as numpy does, so the stream continues identically.
  template <class T>
  std::vector<T> choice_without_replacement(const std::vector<T>& a, int64_t size) {
    const auto perm = permutation(static_cast<int64_t>(a.size()));
    std::vector<T> out;
    out.reserve(static_cast<size_t>(size));
    for (int64_t i = 0; i < size; ++i) out.push_back(a[static_cast<size_t>(perm[static_cast<size_t>(i)])]);
    return out;
  }

 private:
  uint32_t mt_[624];
  int index_ = 624;
};

// A small counter-based generator for everything xfer draws itself (augmentations, shuffles, subsamples): the same
// sequence on every platform and compiler, derived from (seed, stream ids) without shared state.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  static Rng derive(uint64_t seed, uint64_t a, uint64_t b = 0, uint64_t c = 0);
  uint64_t next();
  double uniform();                      // [0, 1) with 53 bits
  double uniform(double lo, double hi);  // [lo, hi)
  int64_t below(int64_t n);              // [0, n), unbiased
  bool bernoulli(double p) { return uniform() < p; }
  double normal();                       // standard normal (Box–Muller)
  double gamma(double shape);            // Marsaglia–Tsang
  double beta(double a, double b);

 private:
  uint64_t state_;
};

}  // namespace xfer::data
