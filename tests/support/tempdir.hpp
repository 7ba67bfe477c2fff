// Test support: a fresh folder per test under the build tree, removed when the test passes, kept when it fails.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace xfer::test {

class TempDir {
 public:
  explicit TempDir(const std::string& name = "");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::string str() const { return path_.string(); }
  std::filesystem::path operator/(const std::string& rel) const { return path_ / rel; }
  // Writes a file (creating folders) and returns its path.
  std::string write(const std::string& rel, const std::string& content) const;
  // Every regular file below, relative, sorted: to check that a failing command wrote nothing.
  std::vector<std::string> listing() const;

 private:
  std::filesystem::path path_;
};

// A folder another user (the tests' `nobody`) can reach wherever the build tree is — under the system's temporary
// folder, mode 0755 — holding world-readable copies of what that user's command needs (a clone in a `mktemp -d`
// folder, mode 0700, hides the build tree from everyone else). Removed when the test ends.
class SharedDir {
 public:
  SharedDir();
  ~SharedDir();
  SharedDir(const SharedDir&) = delete;
  SharedDir& operator=(const SharedDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& rel) const { return path_ / rel; }
  // A world-readable copy of a file or folder (executables stay executable) at `rel`; its path.
  std::string copy(const std::filesystem::path& from, const std::string& rel) const;

 private:
  std::filesystem::path path_;
};

std::string read_file(const std::string& path);

// Stands in for a TorchScript backbone where only the spec reader and plan see it: they check that the file is a
// zip archive (its magic), not that it loads.
inline const std::string kBackboneStandIn = std::string("PK\x03\x04", 4) + " stand-in backbone (never loaded)";

}  // namespace xfer::test
