#include "support/small_disk.hpp"

#include <sys/mount.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace xfer::test {

namespace {
std::string size_option(int64_t bytes) { return "size=" + std::to_string(bytes); }
}  // namespace

SmallDisk::SmallDisk(const std::string& dir, int64_t bytes) : dir_(dir) {
  if (geteuid() != 0)
    throw std::runtime_error("SmallDisk needs root to mount a tmpfs on " + dir +
                             " (run the reliability tests as root, as CI does)");
  std::filesystem::create_directories(dir_);
  const std::string opt = size_option(bytes);
  if (mount("tmpfs", dir_.c_str(), "tmpfs", 0, opt.c_str()) != 0)
    throw std::runtime_error("mount -t tmpfs -o " + opt + " tmpfs " + dir_ + ": " + std::strerror(errno));
}

SmallDisk::~SmallDisk() { umount2(dir_.c_str(), MNT_DETACH); }

void SmallDisk::fill(int64_t leave, const std::string& name) const {
  std::ofstream out(dir_ + "/" + name, std::ios::binary | std::ios::app);
  const std::vector<char> block(4096, 0);
  while (free_bytes() > leave + static_cast<int64_t>(block.size())) {
    out.write(block.data(), static_cast<std::streamsize>(block.size()));
    out.flush();
    if (!out) break;
  }
}

void SmallDisk::free(const std::string& name) const { std::filesystem::remove(dir_ + "/" + name); }

void SmallDisk::resize(int64_t bytes) const {
  const std::string opt = "remount," + size_option(bytes);
  if (mount("tmpfs", dir_.c_str(), "tmpfs", MS_REMOUNT, size_option(bytes).c_str()) != 0)
    throw std::runtime_error("mount -o " + opt + " " + dir_ + ": " + std::strerror(errno));
}

int64_t SmallDisk::free_bytes() const {
  struct statvfs s {};
  if (statvfs(dir_.c_str(), &s) != 0) return 0;
  return static_cast<int64_t>(s.f_bavail) * static_cast<int64_t>(s.f_frsize);
}

}  // namespace xfer::test
