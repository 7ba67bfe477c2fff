// analysis: how ImageNet accuracy relates to downstream performance — correlations with p-values, least-squares
// fits (linear in percentage points, and on logit axes), a seeded bootstrap over models, Clopper–Pearson intervals,
// the ΔR² analysis — and the tables, figures and report built from them. Reads the results schema (store) or a
// plain CSV; knows nothing of torch, MPI or training. Semantics follow scipy 1.10 and statsmodels 0.13; the tests
// compare against them.
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

namespace xfer::analysis {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

struct Correlation {
  double statistic = kNaN;
  double pvalue = kNaN;
};

// scipy.stats.pearsonr: two-sided p from the exact null distribution (a beta on [-1, 1]). NaN for constant input.
Correlation pearson(const std::vector<double>& x, const std::vector<double>& y);
// scipy.stats.spearmanr: Pearson on average ranks; p from Student's t with n - 2 degrees of freedom.
Correlation spearman(const std::vector<double>& x, const std::vector<double>& y);
// scipy.stats.kendalltau (tau-b): exact p without ties for n ≤ 33, else the normal approximation with tie terms.
Correlation kendall(const std::vector<double>& x, const std::vector<double>& y);

// Ordinary least squares y = intercept + slope · x (statsmodels OLS with a constant).
struct Fit {
  int n = 0;
  double slope = kNaN, intercept = kNaN, r2 = kNaN;
  double se_slope = kNaN, se_intercept = kNaN;
  double predict(double x) const { return intercept + slope * x; }
};
Fit ols(const std::vector<double>& x, const std::vector<double>& y);
// R² of y on a constant and two regressors (the ΔR² analysis).
double r2_two(const std::vector<double>& x1, const std::vector<double>& x2, const std::vector<double>& y);

double logit(double p);
double inverse_logit(double z);

// Clopper–Pearson interval for k successes in n trials.
std::pair<double, double> clopper_pearson(int64_t k, int64_t n, double level = 0.95);
// Student-t interval of a mean (seeds as replicates).
std::pair<double, double> mean_interval(const std::vector<double>& v, double level = 0.95);

// Average ranks (scipy.stats.rankdata "average"), 1-based.
std::vector<double> rank_average(const std::vector<double>& v);

// The bootstrap over models: resample the (x, y) pairs with replacement, recompute every statistic.
struct BootstrapOptions {
  int resamples = 10000;
  uint64_t seed = 0;
  double level = 0.95;
  std::vector<double> band_x;  // where the fit's band is evaluated
  bool logit = false;          // also the logit-scale slope (x, y as proportions)
};
struct Interval {
  double lo = kNaN, hi = kNaN;
};
struct BootstrapResult {
  Interval pearson, spearman, kendall, slope, intercept, r2, logit_slope;
  std::vector<Interval> band;  // at band_x
  int resamples = 0;
  int undefined = 0;           // resamples where a statistic was undefined (e.g. one distinct model); left out
};
// x, y: ImageNet top-1 and the metric, both in percentage points. Runs on Kokkos (Serial here, OpenMP/CUDA on
// clusters); resample b draws its indices from a counter-based generator seeded by (seed, b), so the result is
// the same on every backend.
BootstrapResult bootstrap(const std::vector<double>& x, const std::vector<double>& y, const BootstrapOptions& o);
// ΔR² = R²(y ~ x + z) − R²(y ~ x) over the same resamples.
Interval bootstrap_delta_r2(const std::vector<double>& x, const std::vector<double>& z, const std::vector<double>& y,
                            int resamples, uint64_t seed, double level = 0.95);

}  // namespace xfer::analysis
