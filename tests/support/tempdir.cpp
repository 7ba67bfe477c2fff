#include "support/tempdir.hpp"

#include <algorithm>
#include <atomic>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>

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

SharedDir::SharedDir() {
  std::string tmpl = (fs::temp_directory_path() / "xfer-shared-XXXXXX").string();
  if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp " + tmpl + " failed");
  path_ = tmpl;
  fs::permissions(path_, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                             fs::perms::others_read | fs::perms::others_exec);
}

SharedDir::~SharedDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

std::string SharedDir::copy(const fs::path& from, const std::string& rel) const {
  const fs::path to = path_ / rel;
  fs::create_directories(to.parent_path());
  fs::copy(from, to, fs::copy_options::recursive | fs::copy_options::overwrite_existing);
  const auto readable = fs::perms::owner_read | fs::perms::group_read | fs::perms::others_read;
  const auto searchable = fs::perms::owner_exec | fs::perms::group_exec | fs::perms::others_exec;
  auto open_up = [&](const fs::path& p) {
    const bool dir_or_exec = fs::is_directory(p) || (fs::status(p).permissions() & fs::perms::owner_exec) != fs::perms::none;
    fs::permissions(p, readable | (dir_or_exec ? searchable : fs::perms::none), fs::perm_options::add);
  };
  open_up(to);
  for (fs::path p = to.parent_path(); p != path_ && p.has_parent_path(); p = p.parent_path()) open_up(p);
  if (fs::is_directory(to))
    for (const auto& e : fs::recursive_directory_iterator(to)) open_up(e.path());
  return to.string();
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
