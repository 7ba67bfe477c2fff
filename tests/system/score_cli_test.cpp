// `xfer score` through the binary: the values scikit-learn computes, text and JSON, thresholds tuned on validation,
// and errors that name the file and line.
#include <cmath>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "support/process.hpp"
#include "support/sklearn_cases.hpp"
#include "support/tempdir.hpp"

namespace xfer::test {
namespace {

TEST_F(SklearnParity, XferScoreCliPrintsTheSameValues) {
  int checked = 0;
  for (size_t i = 0; i < cases_.size(); i += 9) {
    const auto& c = cases_[i];
    const std::string id = std::to_string(c.at("id").get<int>());
    const std::string cmd = quote(xfer()) + " score --metric " + c.at("metric").get<std::string>() + " --labels " +
                            quote(file(id, "labels")) + " --scores " + quote(file(id, "scores"));
    const Result text = run(cmd);
    const Result json = run(cmd + " --json");
    if (c.at("expected").is_null()) {
      EXPECT_EQ(text.status, 2) << id << text.err;
      EXPECT_NE(text.err.find("undefined"), std::string::npos) << text.err;
      continue;
    }
    ASSERT_EQ(text.status, 0) << id << text.err;
    const auto last = text.out.substr(text.out.rfind('\n', text.out.size() - 2) + 1);
    EXPECT_LE(std::abs(std::stod(last) - c.at("expected").get<double>()), 1e-12) << id << ": " << text.out;
    ASSERT_EQ(json.status, 0) << json.err;
    const auto j = nlohmann::json::parse(json.out);
    EXPECT_EQ(j.at("metric"), c.at("metric"));
    EXPECT_LE(std::abs(j.at("value").get<double>() - c.at("expected").get<double>()), 1e-12);
    ++checked;
  }
  EXPECT_GE(checked, 20);
  // Thresholds through the CLI.
  const auto& t = tuned_[0];
  const std::string id = t.at("id");
  const Result r = run(quote(xfer()) + " score --metric macro_f1 --labels " + quote(file(id, "labels")) + " --scores " +
                       quote(file(id, "scores")) + " --thresholds-from " + quote(file(id, "val.labels")) + "," +
                       quote(file(id, "val.scores")) + " --json");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_LE(std::abs(nlohmann::json::parse(r.out).at("value").get<double>() - t.at("expected").get<double>()), 1e-12);
}

TEST(ScoreCli, ErrorsNameTheFileAndLine) {
  TempDir dir;
  dir.write("l.csv", "0\n1\n7\n");
  dir.write("s.csv", "0.1,0.9\n0.2,0.8\n0.3,0.7\n");
  dir.write("bad.csv", "0.1,0.9\n0.2,oops\n");
  dir.write("short.csv", "0.1,0.9\n0.2\n");
  Result r = run(quote(xfer()) + " score --metric accuracy --labels l.csv --scores s.csv", dir.str());
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("row 3 has class 7"), std::string::npos) << r.err;
  r = run(quote(xfer()) + " score --metric accuracy --labels l.csv --scores bad.csv", dir.str());
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("bad.csv:2: column 2"), std::string::npos) << r.err;
  r = run(quote(xfer()) + " score --metric accuracy --labels l.csv --scores short.csv", dir.str());
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("short.csv:2"), std::string::npos) << r.err;
  r = run(quote(xfer()) + " score --metric f1 --labels l.csv --scores s.csv", dir.str());
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("unknown metric \"f1\""), std::string::npos) << r.err;
}

}  // namespace
}  // namespace xfer::test
