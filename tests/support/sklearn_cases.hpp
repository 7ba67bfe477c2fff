// Test support: the metric cases scikit-learn 1.2 computed (tests/reference/metrics_cases.py), written once per suite
// as CSV files with their expected values; shared by the in-process parity tests and the `xfer score` ones.
#pragma once

#include <fstream>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "support/process.hpp"
#include "support/tempdir.hpp"

namespace xfer::test {

class SklearnParity : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir("sklearn");
    const Result r = run(std::string(XFER_PYTHON) + " " + quote(std::string(XFER_SOURCE_DIR) +
                                                                "/tests/reference/metrics_cases.py") +
                         " " + quote(dir_->str()));
    ASSERT_EQ(r.status, 0) << r.out << r.err;
    std::ifstream in(*dir_ / "cases.json");
    cases_ = nlohmann::json::parse(in);
    std::ifstream tin(*dir_ / "tuned.json");
    tuned_ = nlohmann::json::parse(tin);
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  static std::string file(const std::string& id, const char* what) {
    return (*dir_ / (id + "." + what + ".csv")).string();
  }
  static inline TempDir* dir_ = nullptr;
  static inline nlohmann::json cases_, tuned_;
};

}  // namespace xfer::test
