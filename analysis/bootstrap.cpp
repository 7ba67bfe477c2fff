// The bootstrap over models on Kokkos: one resample per work item, every statistic computed on raw scratch arrays
// (KOKKOS_INLINE_FUNCTION), indices from a counter-based generator seeded by (seed, resample) — so Serial, OpenMP
// and CUDA give the same intervals.
#include <algorithm>
#include <cmath>
#include <cstring>

#include <Kokkos_Core.hpp>

#include "xfer/analysis/stats.hpp"
#include "xfer/metrics/resample.hpp"

namespace xfer::analysis {

namespace {

using Exec = Kokkos::DefaultExecutionSpace;
using Mem = Exec::memory_space;

using metrics::draw;

KOKKOS_INLINE_FUNCTION double kmean(const double* v, int n) {
  double s = 0;
  for (int i = 0; i < n; ++i) s += v[i];
  return s / n;
}

KOKKOS_INLINE_FUNCTION double kpearson(const double* x, const double* y, int n) {
  const double mx = kmean(x, n), my = kmean(y, n);
  double sxy = 0, sxx = 0, syy = 0;
  for (int i = 0; i < n; ++i) {
    sxy += (x[i] - mx) * (y[i] - my);
    sxx += (x[i] - mx) * (x[i] - mx);
    syy += (y[i] - my) * (y[i] - my);
  }
  if (!(sxx > 0) || !(syy > 0)) return NAN;
  const double r = sxy / Kokkos::Experimental::sqrt(sxx * syy);
  return r > 1 ? 1 : (r < -1 ? -1 : r);
}

// Average ranks into r (insertion sort of indices; n is the number of models).
KOKKOS_INLINE_FUNCTION void kranks(const double* v, int n, int* idx, double* r) {
  for (int i = 0; i < n; ++i) idx[i] = i;
  for (int i = 1; i < n; ++i) {
    const int k = idx[i];
    int j = i - 1;
    while (j >= 0 && v[idx[j]] > v[k]) idx[j + 1] = idx[j], --j;
    idx[j + 1] = k;
  }
  for (int i = 0; i < n;) {
    int j = i;
    while (j + 1 < n && v[idx[j + 1]] == v[idx[i]]) ++j;
    const double avg = (i + j) / 2.0 + 1.0;
    for (int k = i; k <= j; ++k) r[idx[k]] = avg;
    i = j + 1;
  }
}

KOKKOS_INLINE_FUNCTION double kkendall(const double* x, const double* y, int n) {
  long con = 0, dis = 0, xt = 0, yt = 0;
  for (int i = 0; i < n; ++i)
    for (int j = i + 1; j < n; ++j) {
      const double dx = x[i] - x[j], dy = y[i] - y[j];
      if (dx == 0 && dy == 0) ++xt, ++yt;
      else if (dx == 0) ++xt;
      else if (dy == 0) ++yt;
      else if ((dx > 0) == (dy > 0)) ++con;
      else ++dis;
    }
  const long tot = static_cast<long>(n) * (n - 1) / 2;
  if (xt == tot || yt == tot) return NAN;
  const double t = (con - dis) / Kokkos::Experimental::sqrt(static_cast<double>(tot - xt)) /
                   Kokkos::Experimental::sqrt(static_cast<double>(tot - yt));
  return t > 1 ? 1 : (t < -1 ? -1 : t);
}

// slope, intercept, r2 of y on x.
KOKKOS_INLINE_FUNCTION void kols(const double* x, const double* y, int n, double* out) {
  const double mx = kmean(x, n), my = kmean(y, n);
  double sxx = 0, sxy = 0, syy = 0;
  for (int i = 0; i < n; ++i) {
    sxx += (x[i] - mx) * (x[i] - mx);
    sxy += (x[i] - mx) * (y[i] - my);
    syy += (y[i] - my) * (y[i] - my);
  }
  if (!(sxx > 0)) {
    out[0] = out[1] = out[2] = NAN;
    return;
  }
  out[0] = sxy / sxx;
  out[1] = my - out[0] * mx;
  double ssr = 0;
  for (int i = 0; i < n; ++i) {
    const double e = y[i] - out[1] - out[0] * x[i];
    ssr += e * e;
  }
  out[2] = syy > 0 ? 1.0 - ssr / syy : NAN;
}

// numpy.percentile's linear interpolation over the finite values.
Interval percentile_interval(std::vector<double> v, double level, int* undefined) {
  v.erase(std::remove_if(v.begin(), v.end(), [](double a) { return !std::isfinite(a); }), v.end());
  if (undefined) *undefined = std::max(*undefined, 0);
  if (v.empty()) return {};
  std::sort(v.begin(), v.end());
  auto q = [&](double p) {
    const double pos = p * static_cast<double>(v.size() - 1);
    const size_t lo = static_cast<size_t>(std::floor(pos)), hi = std::min(lo + 1, v.size() - 1);
    return v[lo] + (v[hi] - v[lo]) * (pos - static_cast<double>(lo));
  };
  return {q((1 - level) / 2), q(1 - (1 - level) / 2)};
}

}  // namespace

BootstrapResult bootstrap(const std::vector<double>& x, const std::vector<double>& y, const BootstrapOptions& o) {
  BootstrapResult out;
  const int n = static_cast<int>(x.size());
  const int B = o.resamples;
  out.resamples = B;
  if (n < 3 || B < 1) return out;
  constexpr int kStats = 7;  // pearson, spearman, kendall, slope, intercept, r2, logit slope
  const int nb = static_cast<int>(o.band_x.size());
  Kokkos::View<double*, Kokkos::HostSpace, Kokkos::MemoryTraits<Kokkos::Unmanaged>> hx(const_cast<double*>(x.data()), n),
      hy(const_cast<double*>(y.data()), n), hb(const_cast<double*>(o.band_x.data()), nb);
  auto dx = Kokkos::create_mirror_view_and_copy(Mem(), hx);
  auto dy = Kokkos::create_mirror_view_and_copy(Mem(), hy);
  auto db = Kokkos::create_mirror_view_and_copy(Mem(), hb);
  Kokkos::View<double**, Kokkos::LayoutRight, Mem> stats("boot.stats", B, kStats);
  Kokkos::View<double**, Kokkos::LayoutRight, Mem> band("boot.band", B, nb > 0 ? nb : 1);
  Kokkos::Experimental::UniqueToken<Exec> token;
  // Scratch per concurrent worker: resampled x, y, their ranks, logits, and an index buffer.
  Kokkos::View<double**, Kokkos::LayoutRight, Mem> scratch("boot.scratch", token.size(), 6 * n);
  Kokkos::View<int**, Kokkos::LayoutRight, Mem> iscratch("boot.iscratch", token.size(), n);
  const uint64_t seed = o.seed;
  const bool with_logit = o.logit;
  Kokkos::parallel_for(
      "xfer::analysis::bootstrap", Kokkos::RangePolicy<Exec>(0, B), KOKKOS_LAMBDA(const int b) {
        const int id = token.acquire();
        double* rx = &scratch(id, 0);
        double* ry = rx + n;
        double* kx = ry + n;
        double* ky = kx + n;
        double* lx = ky + n;
        double* ly = lx + n;
        int* idx = &iscratch(id, 0);
        uint64_t s = seed ^ (0xA24BAED4963EE407ULL * static_cast<uint64_t>(b + 1));
        for (int i = 0; i < n; ++i) {
          const int j = static_cast<int>(draw(s, n));
          rx[i] = dx(j);
          ry[i] = dy(j);
        }
        stats(b, 0) = kpearson(rx, ry, n);
        kranks(rx, n, idx, kx);
        kranks(ry, n, idx, ky);
        stats(b, 1) = kpearson(kx, ky, n);
        stats(b, 2) = kkendall(rx, ry, n);
        double fit[3];
        kols(rx, ry, n, fit);
        stats(b, 3) = fit[0];
        stats(b, 4) = fit[1];
        stats(b, 5) = fit[2];
        for (int k = 0; k < nb; ++k) band(b, k) = fit[1] + fit[0] * db(k);
        if (with_logit) {
          for (int i = 0; i < n; ++i) {
            const double px = rx[i] / 100.0, py = ry[i] / 100.0;
            lx[i] = Kokkos::Experimental::log(px / (1 - px));
            ly[i] = Kokkos::Experimental::log(py / (1 - py));
          }
          double lf[3];
          kols(lx, ly, n, lf);
          stats(b, 6) = lf[0];
        } else {
          stats(b, 6) = NAN;
        }
        token.release(id);
      });
  auto hs = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), stats);
  auto hband = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), band);
  std::vector<double> col(static_cast<size_t>(B));
  Interval* targets[kStats] = {&out.pearson, &out.spearman, &out.kendall, &out.slope, &out.intercept, &out.r2, &out.logit_slope};
  for (int k = 0; k < kStats; ++k) {
    int undefined = 0;
    for (int b = 0; b < B; ++b) {
      col[b] = hs(b, k);
      undefined += !std::isfinite(col[b]);
    }
    if (k < 6) out.undefined = std::max(out.undefined, undefined);
    if (k == 6 && !with_logit) continue;
    *targets[k] = percentile_interval(col, o.level, nullptr);
  }
  for (int k = 0; k < nb; ++k) {
    for (int b = 0; b < B; ++b) col[b] = hband(b, k);
    out.band.push_back(percentile_interval(col, o.level, nullptr));
  }
  return out;
}

Interval bootstrap_delta_r2(const std::vector<double>& x, const std::vector<double>& z, const std::vector<double>& y,
                            int resamples, uint64_t seed, double level) {
  const int n = static_cast<int>(x.size());
  if (n < 4 || resamples < 1) return {};
  std::vector<double> delta(static_cast<size_t>(resamples));
  std::vector<double> rx(n), rz(n), ry(n);
  for (int b = 0; b < resamples; ++b) {
    uint64_t s = seed ^ (0x9FB21C651E98DF25ULL * static_cast<uint64_t>(b + 1));
    for (int i = 0; i < n; ++i) {
      const int j = static_cast<int>(draw(s, n));
      rx[i] = x[j], rz[i] = z[j], ry[i] = y[j];
    }
    const double r1 = ols(rx, ry).r2, r2 = r2_two(rx, rz, ry);
    delta[b] = r2 - r1;
  }
  return percentile_interval(delta, level, nullptr);
}

}  // namespace xfer::analysis
