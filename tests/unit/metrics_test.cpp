// Metrics against scikit-learn 1.2 on random cases (ties, absent classes, extreme imbalance, one-column binary,
// degenerate inputs): |difference| ≤ 1e-12, and the same "undefined" verdicts. Plus `xfer score` end to end.
#include <cmath>
#include <fstream>
#include <memory>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "support/kokkos_env.hpp"
#include "support/sklearn_cases.hpp"
#include "support/process.hpp"
#include "support/tempdir.hpp"
#include "xfer/metrics/csv.hpp"
#include "xfer/metrics/metrics.hpp"

namespace xfer::test {
namespace {


TEST_F(SklearnParity, AtLeast200CasesWithinOneEMinus12) {
  ASSERT_GE(cases_.size(), 200u);
  std::map<std::string, int> per_metric;
  int undefined = 0;
  for (const auto& c : cases_) {
    const std::string id = std::to_string(c.at("id").get<int>());
    const auto m = metrics::parse_metric(c.at("metric"));
    const auto y = metrics::read_labels_csv(file(id, "labels"));
    const auto s = metrics::read_scores_csv(file(id, "scores"));
    SCOPED_TRACE("case " + id + " " + c.at("metric").get<std::string>() + " (" + c.at("kind").get<std::string>() + ")");
    if (c.at("expected").is_null()) {
      EXPECT_THROW(metrics::evaluate(m, y, s), metrics::Undefined);
      ++undefined;
      continue;
    }
    const double expected = c.at("expected");
    const double got = metrics::evaluate(m, y, s);
    EXPECT_LE(std::abs(got - expected), 1e-12) << "got " << got << ", scikit-learn " << expected;
    per_metric[c.at("metric")]++;
  }
  for (const char* m : {"accuracy", "balanced_accuracy", "qwk", "macro_f1", "roc_auc", "log_loss"})
    EXPECT_GE(per_metric[m], 30) << m;
  EXPECT_GE(undefined, 3) << "degenerate inputs are part of the suite";
}

TEST_F(SklearnParity, TunedThresholdsMatchABruteForceSearch) {
  for (const auto& c : tuned_) {
    const std::string id = c.at("id");
    const auto vy = metrics::read_labels_csv(file(id, "val.labels"));
    const auto vs = metrics::read_scores_csv(file(id, "val.scores"));
    const auto thr = metrics::tune_thresholds(vy, vs);
    const auto expected_thr = c.at("thresholds").get<std::vector<double>>();
    ASSERT_EQ(thr.size(), expected_thr.size());
    for (size_t j = 0; j < thr.size(); ++j) EXPECT_DOUBLE_EQ(thr[j], expected_thr[j]) << id << " class " << j;
    const auto y = metrics::read_labels_csv(file(id, "labels"));
    const auto s = metrics::read_scores_csv(file(id, "scores"));
    EXPECT_LE(std::abs(metrics::evaluate(metrics::Metric::macro_f1, y, s, &thr) - c.at("expected").get<double>()),
              1e-12)
        << id;
  }
}


metrics::Labels single(std::vector<int32_t> v, int k) {
  metrics::Labels y;
  y.n = static_cast<int64_t>(v.size());
  y.k = k;
  y.single = std::move(v);
  return y;
}
metrics::Scores scores(std::vector<double> v, int k) {
  metrics::Scores s;
  s.k = k;
  s.n = static_cast<int64_t>(v.size()) / k;
  s.values = std::move(v);
  return s;
}

TEST(Metrics, ConfusionMatrixAndPerClassF1) {
  const auto y = single({0, 0, 1, 2, 2, 2}, 3);
  const auto s = scores({.9, .1, 0, .2, .7, .1, .1, .8, .1, 0, 0, 1, 0, .6, .4, .5, .5, 0}, 3);
  EXPECT_EQ(metrics::confusion_matrix(y, s), (std::vector<int64_t>{1, 1, 0, 0, 1, 0, 1, 1, 1}));
  const auto f1 = metrics::per_class_f1(y, s);
  ASSERT_EQ(f1.size(), 3u);
  EXPECT_DOUBLE_EQ(f1[0], 2.0 * 1 / (2 + 2));
  EXPECT_DOUBLE_EQ(f1[1], 2.0 * 1 / (1 + 3));
  EXPECT_DOUBLE_EQ(f1[2], 2.0 * 1 / (3 + 1));
}

TEST(Metrics, BadInputNamesRowAndColumn) {
  const auto y = single({0, 1, 5}, 6);
  const auto s = scores({.1, .9, .2, .8, .3, .7}, 2);
  try {
    metrics::evaluate(metrics::Metric::accuracy, y, s);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("row 3 has class 5"), std::string::npos) << e.what();
  }
  auto nan = scores({.1, std::nan(""), .2, .8}, 2);
  EXPECT_THROW(metrics::evaluate(metrics::Metric::accuracy, single({0, 1}, 2), nan), Error);
  EXPECT_THROW(metrics::evaluate(metrics::Metric::log_loss, single({0, 1}, 2), scores({1.5, -.5, .2, .8}, 2)), Error);
  EXPECT_THROW(metrics::evaluate(metrics::Metric::roc_auc, single({0, 1, 2}, 3), scores({1, 0, 0, 0, 1, 0, 0, 0, 1}, 3)),
               Error);
  metrics::Labels empty;
  empty.k = 2;
  EXPECT_THROW(metrics::evaluate(metrics::Metric::accuracy, empty, scores({}, 2)), metrics::Undefined);
}

TEST(Metrics, BootstrapIsSeededAndCalibrated) {
  // 500 samples, 80 % correct: the bootstrap standard error of accuracy should be close to sqrt(p(1-p)/n).
  std::vector<int32_t> lab(500);
  std::vector<double> sc(1000);
  for (int i = 0; i < 500; ++i) {
    lab[i] = i % 2;
    const bool correct = (i * 7919) % 5 != 0;
    const int pred = correct ? lab[i] : 1 - lab[i];
    sc[2 * i + pred] = 0.9;
    sc[2 * i + 1 - pred] = 0.1;
  }
  const auto y = single(lab, 2);
  const auto s = scores(sc, 2);
  const auto a = metrics::bootstrap(metrics::Metric::accuracy, y, s, 4000, 42);
  const auto b = metrics::bootstrap(metrics::Metric::accuracy, y, s, 4000, 42);
  const auto c = metrics::bootstrap(metrics::Metric::accuracy, y, s, 4000, 43);
  EXPECT_DOUBLE_EQ(a.value, 0.8);
  EXPECT_EQ(a.lo, b.lo);
  EXPECT_EQ(a.hi, b.hi);
  EXPECT_NE(a.std_error, c.std_error);
  const double analytic = std::sqrt(0.8 * 0.2 / 500);
  EXPECT_NEAR(a.std_error, analytic, 0.08 * analytic);
  EXPECT_NEAR(a.hi - a.lo, 2 * 1.96 * analytic, 0.12 * 2 * 1.96 * analytic);
  EXPECT_LT(a.lo, a.value);
  EXPECT_GT(a.hi, a.value);
  // AUC and the others run and bracket their value.
  for (auto m : {metrics::Metric::roc_auc, metrics::Metric::balanced_accuracy, metrics::Metric::qwk,
                 metrics::Metric::macro_f1, metrics::Metric::log_loss}) {
    const auto iv = metrics::bootstrap(m, y, s, 500, 7);
    EXPECT_LE(iv.lo, iv.value) << metrics::metric_name(m);
    EXPECT_GE(iv.hi, iv.value) << metrics::metric_name(m);
    EXPECT_EQ(iv.undefined, 0);
  }
}

TEST(Metrics, BootstrapAucMatchesResampledEvaluation) {
  // With one resample, the weighted-pass AUC must equal evaluate() on the explicitly resampled data.
  std::vector<int32_t> lab;
  std::vector<double> sc;
  for (int i = 0; i < 300; ++i) {
    lab.push_back((i * 31) % 7 < 3);
    sc.push_back(std::round(((i * 17) % 101) / 10.0) / 10.0);
  }
  const auto y = single(lab, 2);
  const auto s = scores(sc, 1);
  const auto iv = metrics::bootstrap(metrics::Metric::roc_auc, y, s, 1, 99, 0.5);
  // Reproduce the draws: splitmix64 as in the kernel.
  uint64_t st = 99 ^ (0xD1B54A32D192ED03ULL * 1);
  std::vector<int32_t> rl;
  std::vector<double> rs;
  for (int r = 0; r < 300; ++r) {
    uint64_t z = (st += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z ^= z >> 31;
    const int64_t i = static_cast<int64_t>((static_cast<unsigned __int128>(z) * 300u) >> 64);
    rl.push_back(lab[i]);
    rs.push_back(sc[i]);
  }
  EXPECT_NEAR(iv.lo, metrics::evaluate(metrics::Metric::roc_auc, single(rl, 2), scores(rs, 1)), 1e-12);
}


}  // namespace
}  // namespace xfer::test
