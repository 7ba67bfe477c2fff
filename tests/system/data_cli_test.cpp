// Datasets through the binary: `xfer splits` against numpy's draw bit for bit, wrong roots and layouts as clear
// errors, and `xfer plan`'s view of the resolved validation (before the data is staged, and after).
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "support/dataset_fixtures.hpp"
#include "support/process.hpp"
#include "support/tempdir.hpp"
#include "xfer/core/error.hpp"
#include "xfer/data/dataset.hpp"
#include "xfer/grid/grid.hpp"
#include "xfer/spec/catalog.hpp"
#include "xfer/spec/spec.hpp"

namespace fs = std::filesystem;

namespace xfer::test {
namespace {

TEST_F(Fixtures, PaperSplitsEqualNumpysDrawBitForBit) {
  for (const char* kind : {"aptos", "cassava", "eurosat", "melanoma"}) {
    SCOPED_TRACE(kind);
    const std::string ref = (*dir_ / (std::string(kind) + ".ref.csv")).string();
    const std::string got = (*dir_ / (std::string(kind) + ".xfer.csv")).string();
    Result r = run(std::string(XFER_PYTHON) + " " + quote(std::string(XFER_SOURCE_DIR) + "/tests/reference/paper_splits.py") +
                   " " + kind + " " + quote(root(kind)) + " " + quote(ref));
    ASSERT_EQ(r.status, 0) << r.err;
    r = run(quote(xfer()) + " splits --kind " + kind + " --root " + quote(root(kind)) + " --out " + quote(got));
    ASSERT_EQ(r.status, 0) << r.err;
    const auto want = read_splits(ref), have = read_splits(got);
    const data::Dataset d = open(kind);
    std::set<std::string> dropped;
    for (const auto& p : d.problems)
      if (p.reason.find("duplicate") == std::string::npos) dropped.insert(p.id);
    size_t held = 0;
    for (const auto& [id, split] : want) {
      if (dropped.count(id)) {
        EXPECT_EQ(have.count(id), 0u) << id << " has a problem and must not be in a split";
        continue;
      }
      ASSERT_TRUE(have.count(id)) << id;
      EXPECT_EQ(have.at(id), split) << id;
      held += split == "test";
    }
    EXPECT_EQ(have.size(), want.size() - dropped.size());
    EXPECT_GT(held, 0u);
  }
}

TEST_F(Fixtures, WrongRootOrLayoutIsAClearError) {
  try {
    data::open("x", "aptos", root("cassava") + "/nope", paper("aptos"));
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("does not exist"), std::string::npos) << e.what();
  }
  try {
    data::open("x", "hpa", root("aptos"), paper("hpa"));
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not a hpa dataset as downloaded"), std::string::npos) << e.what();
  }
  const Result r = run(quote(xfer()) + " splits --kind eurosat --root " + quote(root("idx")));
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("eurosat"), std::string::npos) << r.err;
}

TEST_F(Fixtures, PlanningBeforeTheDataIsStagedKeysPaperKindsFromTheirKind) {
  TempDir dir;
  dir.write("m.pt", kBackboneStandIn);
  ::unsetenv("XFER_TEST_UNSTAGED");
  const std::string text = layout_spec(dataset_entry("ap", "aptos", "${XFER_TEST_UNSTAGED}/aptos") +
                                       dataset_entry("atlas", "hpa", "${XFER_TEST_UNSTAGED}/hpa") +
                                       dataset_entry("folder", "imagefolder", "${XFER_TEST_UNSTAGED}/f"));
  const spec::Spec unresolved = spec::load(dir.write("s.toml", text));
  const spec::Spec spec = data::with_layouts_resolved(unresolved);
  const auto trials = grid::expand(spec);
  ASSERT_EQ(trials.size(), 3u);
  for (const auto& d : spec.datasets) EXPECT_FALSE(d.resolved->layout_checked) << d.name;
  EXPECT_EQ(trials[0].config.validation, Validation::paper);
  EXPECT_EQ(trials[1].config.validation, Validation::fixed);
  EXPECT_EQ(trials[2].config.validation, Validation::paper) << "generic kinds fall back to study.selection";
  // The paper kinds' keys do not depend on resolution: the same as expanding them unresolved.
  spec::Spec paper_only = unresolved;
  paper_only.datasets.pop_back();
  const auto unresolved_trials = grid::expand(paper_only);
  ASSERT_EQ(unresolved_trials.size(), 2u);
  EXPECT_EQ(unresolved_trials[0].key, trials[0].key);
  EXPECT_EQ(unresolved_trials[1].key, trials[1].key);
  // `xfer plan` says that it could not check the generic kind's layout.
  const Result r = run(quote(xfer()) + " plan s.toml", dir.str());
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.err.find("dataset \"folder\" (imagefolder)"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("cannot be checked"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("dataset \"ap\""), std::string::npos) << r.err;
}

TEST_F(Fixtures, PlanAndSplitsReportTheResolvedValidation) {
  TempDir dir;
  dir.write("m.pt", kBackboneStandIn);
  dir.write("s.toml", layout_spec(dataset_entry("pre", "imagefolder", root("imagefolder_split"))));
  const Result plan = run(quote(xfer()) + " plan s.toml --json", dir.str());
  ASSERT_EQ(plan.status, 0) << plan.err;
  const auto j = nlohmann::json::parse(plan.out);
  EXPECT_EQ(j["datasets"][0]["validation"], "fixed");
  const Result splits = run(quote(xfer()) + " splits --spec s.toml --dataset pre --json", dir.str());
  ASSERT_EQ(splits.status, 0) << splits.err;
  const auto sj = nlohmann::json::parse(splits.out);
  EXPECT_EQ(sj["validation"], "fixed");
  EXPECT_EQ(sj["val"].get<size_t>(), expected_["imagefolder_split"]["val"].get<size_t>());
}

}  // namespace
}  // namespace xfer::test
