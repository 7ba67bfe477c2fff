// Test support: a real small file system (tmpfs of a given size) mounted on a folder, to run xfer against a disk
// that fills up — ENOSPC from the kernel, not a simulated error. Needs root (the CI machines run as root, as the
// SLURM test does); without it the constructor throws and the test fails, saying why.
#pragma once

#include <cstdint>
#include <string>

namespace xfer::test {

class SmallDisk {
 public:
  // Mounts a tmpfs of `bytes` on `dir` (created if missing).
  SmallDisk(const std::string& dir, int64_t bytes);
  ~SmallDisk();  // unmounts (lazily, so a process still holding a file cannot keep it mounted)
  SmallDisk(const SmallDisk&) = delete;
  SmallDisk& operator=(const SmallDisk&) = delete;
  const std::string& path() const { return dir_; }
  // Fills the free space with a file (`name` under the mount), leaving about `leave` bytes free.
  void fill(int64_t leave = 0, const std::string& name = "filler") const;
  // Removes the filler file: the space is back.
  void free(const std::string& name = "filler") const;
  // Grows the file system to `bytes` (mount -o remount,size=…).
  void resize(int64_t bytes) const;
  int64_t free_bytes() const;

 private:
  std::string dir_;
};

}  // namespace xfer::test
