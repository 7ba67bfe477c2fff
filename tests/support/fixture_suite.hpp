// Test support: a suite whose tests share the generated dataset layouts (tests/fixtures/make_datasets.py), made once
// per suite in data_ and removed after it.
#pragma once

#include <gtest/gtest.h>

#include "support/process.hpp"
#include "support/tempdir.hpp"

namespace xfer::test {

class WithFixtureDatasets : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    data_ = new TempDir("data");
    const Result r = make_fixture_datasets(data_->str());
    ASSERT_EQ(r.status, 0) << r.err;
  }
  static void TearDownTestSuite() {
    delete data_;
    data_ = nullptr;
  }
  static inline TempDir* data_ = nullptr;
};

}  // namespace xfer::test
