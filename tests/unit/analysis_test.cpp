// The statistics module in-process: parity with scipy 1.10 and statsmodels 0.13 on random per-model tables (within
// 1e-9), the bootstrap against scipy.stats.bootstrap (within Monte-Carlo error). Through the binary (selection from a
// results file, bad input notes, the report in headless Chromium): tests/system/analysis_cli_test.cpp.
#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "support/kokkos_env.hpp"
#include "support/process.hpp"
#include "support/tempdir.hpp"
#include "xfer/analysis/stats.hpp"
#include "xfer/analysis/study.hpp"
#include "xfer/metrics/metrics.hpp"
#include "xfer/store/store.hpp"

namespace fs = std::filesystem;

namespace xfer::test {
namespace {

std::pair<std::vector<double>, std::vector<double>> read_xy(const std::string& path) {
  std::vector<double> x, y;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    const auto c = line.find(',');
    x.push_back(std::stod(line.substr(0, c)));
    y.push_back(std::stod(line.substr(c + 1)));
  }
  return {x, y};
}

bool close(double a, double b, double tol = 1e-9) {
  if (std::isnan(a) && std::isnan(b)) return true;
  return std::abs(a - b) <= tol * std::max(1.0, std::abs(b));
}

class ScipyParity : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir("scipy");
    const Result r = run(std::string(XFER_PYTHON) + " " + quote(std::string(XFER_SOURCE_DIR) + "/tests/reference/stats_ref.py") +
                         " " + quote(dir_->str()));
    ASSERT_EQ(r.status, 0) << r.err;
    std::ifstream in(*dir_ / "cases.json");
    cases_ = nlohmann::json::parse(in);
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  static TempDir* dir_;
  static nlohmann::json cases_;
};
TempDir* ScipyParity::dir_ = nullptr;
nlohmann::json ScipyParity::cases_;

TEST_F(ScipyParity, CorrelationsPValuesAndOlsWithinOneEMinus9) {
  ASSERT_GE(cases_.size(), 60u);
  int asymptotic = 0, tied = 0;
  for (const auto& c : cases_) {
    const int id = c["id"];
    SCOPED_TRACE("case " + std::to_string(id) + ", n = " + std::to_string(c["n"].get<int>()));
    const auto [x, y] = read_xy((*dir_ / (std::to_string(id) + ".csv")).string());
    const struct {
      const char* name;
      analysis::Correlation got;
    } checks[] = {{"pearson", analysis::pearson(x, y)}, {"spearman", analysis::spearman(x, y)},
                  {"kendall", analysis::kendall(x, y)}};
    for (const auto& k : checks) {
      const auto& want = c[k.name];
      const double ws = want[0].is_null() ? NAN : want[0].get<double>(), wp = want[1].is_null() ? NAN : want[1].get<double>();
      EXPECT_TRUE(close(k.got.statistic, ws)) << k.name << ": " << k.got.statistic << " vs scipy " << ws;
      EXPECT_LE(std::abs(k.got.pvalue - wp), 1e-9) << k.name << " p: " << k.got.pvalue << " vs scipy " << wp;
    }
    const auto f = analysis::ols(x, y);
    const auto& o = c["ols"];
    EXPECT_TRUE(close(f.slope, o["slope"])) << f.slope << " vs " << o["slope"];
    EXPECT_TRUE(close(f.intercept, o["intercept"])) << f.intercept << " vs " << o["intercept"];
    EXPECT_TRUE(close(f.se_slope, o["se_slope"]));
    EXPECT_TRUE(close(f.se_intercept, o["se_intercept"]));
    EXPECT_TRUE(close(f.r2, o["r2"]));
    EXPECT_TRUE(close(analysis::r2_two(x, c["z"].get<std::vector<double>>(), y), c["r2_two"]));
    asymptotic += c["n"].get<int>() > 33;
    std::vector<double> sx = x;
    std::sort(sx.begin(), sx.end());
    tied += std::adjacent_find(sx.begin(), sx.end()) != sx.end();
  }
  EXPECT_GE(asymptotic, 10) << "Kendall's normal approximation is covered";
  EXPECT_GE(tied, 10) << "ties are covered";
}

TEST_F(ScipyParity, BootstrapIntervalsWithinMonteCarloErrorOfScipy) {
  int checked = 0;
  for (const auto& c : cases_) {
    if (!c.contains("bootstrap")) continue;
    const int id = c["id"];
    const auto [x, y] = read_xy((*dir_ / (std::to_string(id) + ".csv")).string());
    analysis::BootstrapOptions o;
    o.resamples = 10000;
    o.seed = 99;
    const auto b = analysis::bootstrap(x, y, o);
    const std::pair<const char*, analysis::Interval> ours[] = {
        {"pearson", b.pearson}, {"spearman", b.spearman}, {"kendall", b.kendall}, {"slope", b.slope}, {"intercept", b.intercept}};
    for (const auto& [name, iv] : ours) {
      const auto& w = c["bootstrap"][name];
      const double se = w[2].get<double>();
      // Two independent 10,000-resample estimates of a 2.5 % quantile differ by about 0.04 standard errors for a
      // smooth statistic; rank statistics on few models are lumpy, so allow 0.3.
      EXPECT_NEAR(iv.lo, w[0].get<double>(), 0.3 * se + 1e-12) << "case " << id << " " << name;
      EXPECT_NEAR(iv.hi, w[1].get<double>(), 0.3 * se + 1e-12) << "case " << id << " " << name;
      ++checked;
    }
  }
  EXPECT_GE(checked, 10);
}

TEST(Statistics, ClopperPearsonAgainstScipysBeta) {
  const Result r = run(std::string(XFER_PYTHON) +
                       " -c 'from scipy.stats import beta; print(beta.ppf(0.025, 37, 64), beta.ppf(0.975, 38, 63))'");
  ASSERT_EQ(r.status, 0);
  double lo, hi;
  std::istringstream(r.out) >> lo >> hi;
  const auto [a, b] = analysis::clopper_pearson(37, 100);
  EXPECT_NEAR(a, lo, 1e-12);
  EXPECT_NEAR(b, hi, 1e-12);
  EXPECT_EQ(analysis::clopper_pearson(0, 50).first, 0.0);
  EXPECT_EQ(analysis::clopper_pearson(50, 50).second, 1.0);
}

}  // namespace
}  // namespace xfer::test
