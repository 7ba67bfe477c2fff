#include "support/tempdir.hpp"

#include <algorithm>
#include <atomic>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>
#include <unistd.h>

namespace fs = std::filesystem;

namespace xfer::test {

namespace {
std::atomic<int> counter{0};
std::string current_test_name() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  if (!info) return "global";
  std::string n = std::string(info->test_suite_name()) + "." + info->name();
  std::replace(n.begin(), n.end(), '/', '_');
  return n;
}
}  // namespace

TempDir::TempDir(const std::string& name) {
  path_ = fs::path(XFER_TEST_TMP) /
          (current_test_name() + (name.empty() ? "" : "." + name) + "." + std::to_string(::getpid()) + "." +
           std::to_string(counter++));
  fs::remove_all(path_);
  fs::create_directories(path_);
}

TempDir::~TempDir() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  const bool failed = info && info->result() && info->result()->Failed();
  std::error_code ec;
  if (!failed) fs::remove_all(path_, ec);
}

std::string TempDir::write(const std::string& rel, const std::string& content) const {
  const fs::path p = path_ / rel;
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << content;
  return p.string();
}

std::vector<std::string> TempDir::listing() const {
  std::vector<std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(path_))
    if (e.is_regular_file()) out.push_back(fs::relative(e.path(), path_).string());
  std::sort(out.begin(), out.end());
  return out;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace xfer::test
