#include "xfer/analysis/stats.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

#include <boost/math/distributions/beta.hpp>
#include <boost/math/distributions/students_t.hpp>
#include <boost/math/special_functions/beta.hpp>

namespace xfer::analysis {

namespace {

bool constant(const std::vector<double>& v) {
  return std::all_of(v.begin(), v.end(), [&](double a) { return a == v.front(); });
}

double mean(const std::vector<double>& v) { return std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size()); }

// scipy's pearsonr: r from centred, normalised vectors; clipped to [-1, 1].
double pearson_r(const std::vector<double>& x, const std::vector<double>& y) {
  const double mx = mean(x), my = mean(y);
  std::vector<double> xm(x.size()), ym(y.size());
  for (size_t i = 0; i < x.size(); ++i) xm[i] = x[i] - mx, ym[i] = y[i] - my;
  double nx = 0, ny = 0;
  for (size_t i = 0; i < x.size(); ++i) nx += xm[i] * xm[i], ny += ym[i] * ym[i];
  nx = std::sqrt(nx), ny = std::sqrt(ny);
  double r = 0;
  for (size_t i = 0; i < x.size(); ++i) r += (xm[i] / nx) * (ym[i] / ny);
  return std::max(-1.0, std::min(1.0, r));
}

double two_sided_t(double t, double df) {
  if (std::isinf(t)) return 0.0;
  boost::math::students_t dist(df);
  return 2.0 * boost::math::cdf(dist, -std::abs(t));
}

}  // namespace

std::vector<double> rank_average(const std::vector<double>& v) {
  const size_t n = v.size();
  std::vector<size_t> idx(n);
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return v[a] < v[b]; });
  std::vector<double> r(n);
  for (size_t i = 0; i < n;) {
    size_t j = i;
    while (j + 1 < n && v[idx[j + 1]] == v[idx[i]]) ++j;
    const double avg = (static_cast<double>(i) + static_cast<double>(j)) / 2.0 + 1.0;
    for (size_t k = i; k <= j; ++k) r[idx[k]] = avg;
    i = j + 1;
  }
  return r;
}

Correlation pearson(const std::vector<double>& x, const std::vector<double>& y) {
  Correlation c;
  const size_t n = x.size();
  if (n < 2 || y.size() != n || constant(x) || constant(y)) return c;
  if (n == 2) {
    c.statistic = ((x[1] > x[0]) - (x[1] < x[0])) * ((y[1] > y[0]) - (y[1] < y[0]));
    c.pvalue = 1.0;
    return c;
  }
  c.statistic = pearson_r(x, y);
  // p = 2 · btdtr(n/2 − 1, n/2 − 1, (1 − |r|) / 2), as scipy 1.10.
  const double ab = static_cast<double>(n) / 2.0 - 1.0;
  const double x_beta = 0.5 * (1.0 - std::abs(c.statistic));
  c.pvalue = x_beta <= 0 ? 0.0 : 2.0 * boost::math::ibeta(ab, ab, x_beta);
  return c;
}

Correlation spearman(const std::vector<double>& x, const std::vector<double>& y) {
  Correlation c;
  const size_t n = x.size();
  if (n < 2 || y.size() != n || constant(x) || constant(y)) return c;
  const auto rx = rank_average(x), ry = rank_average(y);
  // scipy: np.corrcoef of the ranks, then t = r sqrt((n − 2) / ((r + 1)(1 − r))).
  const double mx = mean(rx), my = mean(ry);
  double sxy = 0, sxx = 0, syy = 0;
  for (size_t i = 0; i < n; ++i) {
    sxy += (rx[i] - mx) * (ry[i] - my);
    sxx += (rx[i] - mx) * (rx[i] - mx);
    syy += (ry[i] - my) * (ry[i] - my);
  }
  const double r = std::max(-1.0, std::min(1.0, sxy / std::sqrt(sxx * syy)));
  c.statistic = r;
  const double df = static_cast<double>(n) - 2.0;
  if (df <= 0) return c;
  const double t = r * std::sqrt(df / ((r + 1.0) * (1.0 - r)));
  c.pvalue = two_sided_t(t, df);
  return c;
}

namespace {

// scipy.stats._mstats_basic._kendall_p_exact, two-sided.
double kendall_p_exact(int64_t n, int64_t c) {
  c = std::min(c, n * (n - 1) / 2 - c);
  if (n == 1 || n == 2) return 1.0;
  if (c == 0) return n < 171 ? 2.0 / std::tgamma(static_cast<double>(n) + 1) : 0.0;
  if (c == 1) return n < 172 ? 2.0 / std::tgamma(static_cast<double>(n)) : 0.0;
  if (4 * c == n * (n - 1)) return 1.0;
  std::vector<double> next(static_cast<size_t>(c + 1), 0.0);
  next[0] = next[1] = 1.0;
  const bool scaled = n >= 171;
  for (int64_t j = 3; j <= n; ++j) {
    std::partial_sum(next.begin(), next.end(), next.begin());
    if (scaled)
      for (auto& v : next) v /= static_cast<double>(j);
    if (j <= c) {
      // next[j:] -= next[:c+1-j], with the right-hand side read before the update (numpy semantics).
      const std::vector<double> before(next.begin(), next.begin() + (c + 1 - j));
      for (int64_t k = j; k <= c; ++k) next[static_cast<size_t>(k)] -= before[static_cast<size_t>(k - j)];
    }
  }
  const double sum = std::accumulate(next.begin(), next.end(), 0.0);
  return scaled ? sum : 2.0 * sum / std::tgamma(static_cast<double>(n) + 1);
}

}  // namespace

Correlation kendall(const std::vector<double>& x_in, const std::vector<double>& y_in) {
  Correlation c;
  const int64_t n = static_cast<int64_t>(x_in.size());
  if (n < 2 || static_cast<int64_t>(y_in.size()) != n) return c;
  // Pair counts directly (n is the number of models: O(n²) is nothing).
  int64_t con = 0, dis = 0, xtie = 0, ytie = 0, ntie = 0;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = i + 1; j < n; ++j) {
      const double dx = x_in[i] - x_in[j], dy = y_in[i] - y_in[j];
      if (dx == 0 && dy == 0) ++ntie, ++xtie, ++ytie;
      else if (dx == 0) ++xtie;
      else if (dy == 0) ++ytie;
      else if ((dx > 0) == (dy > 0)) ++con;
      else ++dis;
    }
  const int64_t tot = n * (n - 1) / 2;
  if (xtie == tot || ytie == tot) return c;
  const double con_minus_dis = static_cast<double>(con - dis);
  double tau = con_minus_dis / std::sqrt(static_cast<double>(tot - xtie)) / std::sqrt(static_cast<double>(tot - ytie));
  c.statistic = std::min(1.0, std::max(-1.0, tau));
  if (xtie == 0 && ytie == 0 && (n <= 33 || std::min(dis, tot - dis) <= 1)) {
    c.pvalue = kendall_p_exact(n, tot - dis);
    return c;
  }
  // Tie statistics per variable, as scipy's count_rank_tie over tie groups.
  auto tie_terms = [&](const std::vector<double>& v, double& t0, double& t1) {
    std::vector<double> s = v;
    std::sort(s.begin(), s.end());
    t0 = t1 = 0;
    for (size_t i = 0; i < s.size();) {
      size_t j = i;
      while (j + 1 < s.size() && s[j + 1] == s[i]) ++j;
      const double cnt = static_cast<double>(j - i + 1);
      if (cnt > 1) t0 += cnt * (cnt - 1.) * (cnt - 2), t1 += cnt * (cnt - 1.) * (2 * cnt + 5);
      i = j + 1;
    }
  };
  double x0, x1, y0, y1;
  tie_terms(x_in, x0, x1);
  tie_terms(y_in, y0, y1);
  const double m = static_cast<double>(n) * (static_cast<double>(n) - 1.);
  const double var = (m * (2 * static_cast<double>(n) + 5) - x1 - y1) / 18 +
                     (2 * static_cast<double>(xtie) * static_cast<double>(ytie)) / m +
                     x0 * y0 / (9 * m * (static_cast<double>(n) - 2));
  const double z = con_minus_dis / std::sqrt(var);
  c.pvalue = std::erfc(std::abs(z) / std::sqrt(2.0));
  return c;
}

Fit ols(const std::vector<double>& x, const std::vector<double>& y) {
  Fit f;
  const size_t n = x.size();
  f.n = static_cast<int>(n);
  if (n < 2 || y.size() != n || constant(x)) return f;
  const double mx = mean(x), my = mean(y);
  double sxx = 0, sxy = 0, syy = 0;
  for (size_t i = 0; i < n; ++i) {
    sxx += (x[i] - mx) * (x[i] - mx);
    sxy += (x[i] - mx) * (y[i] - my);
    syy += (y[i] - my) * (y[i] - my);
  }
  f.slope = sxy / sxx;
  f.intercept = my - f.slope * mx;
  double ssr = 0;
  for (size_t i = 0; i < n; ++i) {
    const double e = y[i] - f.predict(x[i]);
    ssr += e * e;
  }
  f.r2 = syy > 0 ? 1.0 - ssr / syy : kNaN;
  if (n > 2) {
    const double s2 = ssr / static_cast<double>(n - 2);
    f.se_slope = std::sqrt(s2 / sxx);
    f.se_intercept = std::sqrt(s2 * (1.0 / static_cast<double>(n) + mx * mx / sxx));
  }
  return f;
}

double r2_two(const std::vector<double>& x1, const std::vector<double>& x2, const std::vector<double>& y) {
  const size_t n = y.size();
  if (n < 3 || x1.size() != n || x2.size() != n) return kNaN;
  // Centred normal equations for the two slopes.
  const double m1 = mean(x1), m2 = mean(x2), my = mean(y);
  double a11 = 0, a12 = 0, a22 = 0, b1 = 0, b2 = 0, syy = 0;
  for (size_t i = 0; i < n; ++i) {
    const double u = x1[i] - m1, v = x2[i] - m2, w = y[i] - my;
    a11 += u * u, a12 += u * v, a22 += v * v, b1 += u * w, b2 += v * w, syy += w * w;
  }
  const double det = a11 * a22 - a12 * a12;
  if (!(std::abs(det) > 1e-12 * a11 * a22) || syy <= 0) return kNaN;
  const double c1 = (b1 * a22 - b2 * a12) / det, c2 = (a11 * b2 - a12 * b1) / det;
  double ssr = 0;
  for (size_t i = 0; i < n; ++i) {
    const double e = (y[i] - my) - c1 * (x1[i] - m1) - c2 * (x2[i] - m2);
    ssr += e * e;
  }
  return 1.0 - ssr / syy;
}

double logit(double p) { return std::log(p / (1.0 - p)); }
double inverse_logit(double z) { return 1.0 / (1.0 + std::exp(-z)); }

std::pair<double, double> clopper_pearson(int64_t k, int64_t n, double level) {
  if (n <= 0) return {kNaN, kNaN};
  const double a = (1.0 - level) / 2.0;
  const double lo = k == 0 ? 0.0 : boost::math::ibeta_inv(static_cast<double>(k), static_cast<double>(n - k + 1), a);
  const double hi = k == n ? 1.0 : boost::math::ibeta_inv(static_cast<double>(k + 1), static_cast<double>(n - k), 1 - a);
  return {lo, hi};
}

std::pair<double, double> mean_interval(const std::vector<double>& v, double level) {
  if (v.size() < 2) return {kNaN, kNaN};
  const double m = mean(v);
  double ss = 0;
  for (double x : v) ss += (x - m) * (x - m);
  const double se = std::sqrt(ss / static_cast<double>(v.size() - 1) / static_cast<double>(v.size()));
  boost::math::students_t t(static_cast<double>(v.size() - 1));
  const double q = boost::math::quantile(t, 1 - (1 - level) / 2);
  return {m - q * se, m + q * se};
}

}  // namespace xfer::analysis
