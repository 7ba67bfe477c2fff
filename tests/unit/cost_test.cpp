// The one cost model: what it charges (the unknown-GMACs fallback included), and that the sweep's order and a job
// array's shards follow its costs exactly. (`xfer plan` against a run: sweep_test's PlanOrderAndShardsUseTheSameCosts.)
#include <algorithm>
#include <numeric>

#include <gtest/gtest.h>

#include "support/tempdir.hpp"
#include "xfer/core/error.hpp"
#include "xfer/grid/cost.hpp"
#include "xfer/spec/spec.hpp"
#include "xfer/sweep/scheduler.hpp"

namespace xfer::test {
namespace {

const char* kSpec = R"(
[study]
name = "c"
results = "r.h5"
[[model]]
name = "small"
backbone = "m.pt"
imagenet_top1 = 70
gmacs = 0.5
[[model]]
name = "large"
backbone = "m.pt"
imagenet_top1 = 70
gmacs = 4.0
[[model]]
name = "unknown"
backbone = "m.pt"
imagenet_top1 = 70
[[dataset]]
name = "e"
kind = "eurosat"
root = "data"
[[dataset]]
name = "a"
kind = "aptos"
root = "data"
[grid]
weight_decays = [0]
epochs = 3
[[grid.optimizer]]
family = "adamw"
lrs = [1e-3, 1e-4]
[[override]]
model = "large"
dataset = "a"
epochs = 1
)";

class Cost : public ::testing::Test {
 protected:
  void SetUp() override {
    dir.write("m.pt", kBackboneStandIn);
    std::filesystem::create_directories(dir / "data");
    spec = spec::load(dir.write("s.toml", kSpec));
    trials = grid::expand(spec);
  }
  TempDir dir;
  spec::Spec spec;
  std::vector<grid::Trial> trials;
};

TEST_F(Cost, ChargesEachTrialWithItsModelsGmacsAndItsDatasetsSize) {
  const auto model = grid::CostModel::from_catalog(spec);
  ASSERT_EQ(trials.size(), 12u);
  for (const auto& t : trials) {
    const auto& m = spec.models[t.model_index];
    const double gmacs = m.gmacs > 0 ? m.gmacs : grid::CostModel::kUnknownGmacs;
    const auto size = grid::catalog_size(spec, spec.datasets[t.dataset_index]);
    EXPECT_DOUBLE_EQ(model.gflop(t), grid::trial_cost_gflop(t.config, gmacs, size)) << t.key.str();
    EXPECT_DOUBLE_EQ(model.gpu_hours(t, 100), grid::trial_gpu_hours(t.config, 100, size));
    EXPECT_GT(model.gflop(t), 0) << "an unknown model is not free: " << m.name;
  }
  EXPECT_TRUE(model.gmacs_known(0));
  EXPECT_FALSE(model.gmacs_known(2));
  EXPECT_DOUBLE_EQ(model.gmacs(2), grid::CostModel::kUnknownGmacs);
}

TEST_F(Cost, MeasuredSizesReplaceTheCatalogs) {
  std::vector<grid::DataSize> sizes = {{100, 10, 50, false, "data"}, grid::catalog_size(spec, spec.datasets[1])};
  const grid::CostModel measured(spec, sizes);
  const auto catalog = grid::CostModel::from_catalog(spec);
  for (const auto& t : trials) {
    if (t.dataset_index == 0) {
      EXPECT_DOUBLE_EQ(measured.gflop(t), grid::trial_cost_gflop(t.config, measured.gmacs(t.model_index), sizes[0]));
      EXPECT_LT(measured.gflop(t), catalog.gflop(t));
    } else {
      EXPECT_DOUBLE_EQ(measured.gflop(t), catalog.gflop(t));
    }
  }
  sizes.pop_back();
  try {
    grid::CostModel(spec, sizes);
    FAIL() << "one size per dataset";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("s.toml"), std::string::npos) << e.what();
  }
}

TEST_F(Cost, TheSweepsOrderAndTheShardsFollowTheModelsCosts) {
  const std::vector<double> cost = grid::CostModel::from_catalog(spec).gflop(trials);
  std::vector<size_t> by_cost(trials.size());
  std::iota(by_cost.begin(), by_cost.end(), 0);
  std::stable_sort(by_cost.begin(), by_cost.end(), [&](size_t a, size_t b) { return cost[a] > cost[b]; });
  // One rank: the scheduler hands the trials out costliest first.
  sweep::Scheduler s(1, 0);
  for (size_t i = 0; i < trials.size(); ++i)
    s.add({static_cast<int64_t>(i), cost[i], trials[i].config.ranks_per_trial, trials[i].config.epochs});
  s.ready(0);
  std::vector<size_t> order;
  for (double now = 0;; ++now) {
    const auto d = s.dispatch(now);
    if (d.starts.empty()) break;
    order.push_back(static_cast<size_t>(d.starts[0].trial));
    s.finish(d.starts[0].trial, 0);
  }
  EXPECT_EQ(order, by_cost);
  // Three shards: shard i holds the trials at positions i, i+3, … of that order.
  for (int i = 0; i < 3; ++i) {
    std::vector<size_t> expected;
    for (size_t p = static_cast<size_t>(i); p < by_cost.size(); p += 3) expected.push_back(by_cost[p]);
    std::sort(expected.begin(), expected.end());
    EXPECT_EQ(sweep::shard_of(cost, i, 3), expected) << "shard " << i;
  }
}

}  // namespace
}  // namespace xfer::test
