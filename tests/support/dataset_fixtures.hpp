// Test support: the generated dataset layouts (tests/fixtures/make_datasets.py) with what each should open to
// (expected.json), made once per suite; helpers to open them with the paper's split settings and to write specs.
#pragma once

#include <filesystem>
#include <fstream>
#include <map>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "support/process.hpp"
#include "support/tempdir.hpp"
#include "xfer/data/dataset.hpp"
#include "xfer/spec/catalog.hpp"

namespace xfer::test {

class Fixtures : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir("fixtures");
    const Result r = make_fixture_datasets(dir_->str());
    ASSERT_EQ(r.status, 0) << r.out << r.err;
    std::ifstream in(*dir_ / "expected.json");
    expected_ = nlohmann::json::parse(in);
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  static std::string root(const std::string& layout) { return (*dir_ / layout).string(); }
  static data::SplitSettings paper(const std::string& kind) {
    data::SplitSettings s;
    const auto* k = spec::find_dataset_kind(kind);
    s.validation = k->native_validation ? Validation::fixed : Validation::paper;
    s.heldout_seed = k->heldout_seed >= 0 ? k->heldout_seed : 0;
    return s;
  }
  static data::Dataset open(const std::string& layout) {
    const std::string kind = expected_[layout]["kind"];
    return data::open(layout, kind, root(layout), paper(kind));
  }
  static std::map<std::string, std::string> read_splits(const std::string& path) {
    std::map<std::string, std::string> m;
    std::ifstream in(path);
    std::string line;
    std::getline(in, line);
    EXPECT_EQ(line, "sample_id,split");
    while (std::getline(in, line)) {
      const auto c = line.rfind(',');
      m.emplace(line.substr(0, c), line.substr(c + 1));  // first occurrence wins
    }
    return m;
  }
  static inline TempDir* dir_ = nullptr;
  static inline nlohmann::json expected_;
};

inline std::string layout_spec(const std::string& datasets, const std::string& selection = "paper") {
  return "[study]\nname = \"l\"\nresults = \"r.h5\"\nselection = \"" + selection +
         "\"\n[[model]]\nname = \"m\"\nbackbone = \"m.pt\"\nimagenet_top1 = 70\n" + datasets +
         "[grid]\nweight_decays = [0]\n[[grid.optimizer]]\nfamily = \"adamw\"\nlrs = [0.001]\n";
}
inline std::string dataset_entry(const std::string& name, const std::string& kind, const std::string& root) {
  return "[[dataset]]\nname = \"" + name + "\"\nkind = \"" + kind + "\"\nroot = \"" + root + "\"\n";
}
inline bool has_line(const std::string& text, const std::string& prefix) {
  return text.rfind(prefix, 0) == 0 || text.find("\n" + prefix) != std::string::npos;
}

}  // namespace xfer::test
