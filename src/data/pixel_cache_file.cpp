#include "xfer/data/pixel_cache.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>
#include <unordered_map>

#include <fmt/format.h>

#include "xfer/core/error.hpp"

// The cache's file: its layout, checksum, writing and opening — what the device pipeline reads (train/device_input),
// without the decoding that fills it (pixel_cache.cpp): plain C++ and fmt, so gpu_smoke compiles it on a machine
// without OpenCV.
namespace xfer::data {

namespace {

constexpr size_t kPage = 4096;

size_t round_up(size_t n) { return (n + kPage - 1) / kPage * kPage; }

Error io_error(const std::string& path, const std::string& what) {
  return errno_error(fmt::format("{}: cannot {} the input cache", path, what), errno);
}

void write_all(int fd, const void* p, size_t n, off_t at, const std::string& path) {
  const auto* c = static_cast<const char*>(p);
  while (n > 0) {
    const ssize_t k = ::pwrite(fd, c, n, at);
    if (k < 0) {
      if (errno == EINTR) continue;
      throw io_error(path, "write");
    }
    c += k, n -= static_cast<size_t>(k), at += k;
  }
}

// The checksum of a cache's flags and pixels, as its header records it (FNV-1a over 64-bit words, 8 lanes: about a
// memory bandwidth; it catches overwritten, zeroed or truncated data, not an adversary).
std::string checksum(const uint8_t* data, size_t bytes) {
  constexpr uint64_t kPrime = 0x100000001b3ULL;
  uint64_t lane[8];
  for (int k = 0; k < 8; ++k) lane[k] = 0xcbf29ce484222325ULL + static_cast<uint64_t>(k);
  size_t i = 0;
  for (; i + 64 <= bytes; i += 64)
    for (int k = 0; k < 8; ++k) {
      uint64_t w;
      std::memcpy(&w, data + i + 8 * k, 8);
      lane[k] = (lane[k] ^ w) * kPrime;
    }
  for (; i < bytes; ++i) lane[0] = (lane[0] ^ data[i]) * kPrime;
  uint64_t all = 0;
  for (int k = 0; k < 8; ++k) all = (all ^ lane[k]) * kPrime;
  return fmt::format("{:016x} {}", all, bytes);
}

// The value of "<name> <value>" on a line of a cache's header ("" when absent).
std::string header_value(const char* header, size_t n, const std::string& name) {
  const std::string h(header, ::strnlen(header, n));
  const auto at = h.find("\n" + name + " ");
  if (at == std::string::npos) return "";
  const auto from = at + name.size() + 2, to = h.find('\n', from);
  return h.substr(from, to == std::string::npos ? std::string::npos : to - from);
}

// A temporary file beside `path`, unique across processes and hosts sharing the folder (mkstemp: O_EXCL).
int create_temporary(const std::string& path, std::string& tmp) {
  std::vector<char> name(path.begin(), path.end());
  const std::string suffix = ".tmp.XXXXXX";
  name.insert(name.end(), suffix.begin(), suffix.end());
  name.push_back('\0');
  const int fd = ::mkostemp(name.data(), O_CLOEXEC);
  tmp.assign(name.data());
  if (fd >= 0) ::fchmod(fd, 0644);
  return fd;
}

// Where a cache's parts lie: a page of header, a byte per image (usable or not), page-aligned pixels.
struct Layout {
  int64_t n = 0;
  size_t image = 0, flags_at = kPage, pixels_at = 0, total = 0;
  Layout(int64_t images, int side)
      : n(images), image(static_cast<size_t>(side) * side * 3), pixels_at(kPage + round_up(static_cast<size_t>(n))),
        total(pixels_at + image * static_cast<size_t>(n)) {}
};

// Caches this process has checked already (path → size and modification time): each is checked once.
std::mutex checked_mu;
std::unordered_map<std::string, std::string> checked;

}  // namespace

// A file's size, modification and status-change times (ns) and inode: what changes when its content is replaced or
// edited. The status-change time (ctime) is there because the modification time can be set back (`touch -r`, `cp -p`,
// rsync -t) — a same-size rewrite in place would keep the rest — while ctime is set by the kernel on every write or
// utime and cannot be: a chmod or a restored mtime costs a rebuild, never a stale cache.
std::string file_stamp(const struct stat& st) {
  return fmt::format("{} {}.{:09d} {}.{:09d} {}", static_cast<long long>(st.st_size),
                     static_cast<long long>(st.st_mtim.tv_sec), static_cast<long>(st.st_mtim.tv_nsec),
                     static_cast<long long>(st.st_ctim.tv_sec), static_cast<long>(st.st_ctim.tv_nsec),
                     static_cast<unsigned long long>(st.st_ino));
}

void PixelCache::write(const std::string& path, int64_t n, int side, const Fill& fill, int threads) {
  const std::string problems_path = path + ".problems";
  const std::string folder = std::filesystem::path(path).parent_path().string();
  std::error_code ec;
  std::filesystem::create_directories(folder, ec);
  if (ec) {
    errno = ec.value();
    throw io_error(folder, "create the folder of");
  }
  std::string tmp;
  const int fd = create_temporary(path, tmp);
  if (fd < 0) throw io_error(tmp, "create");
  const Layout l(n, side);
  const size_t image = l.image;
  std::vector<uint8_t> flags(static_cast<size_t>(n), 0);
  std::vector<std::pair<int64_t, Problem>> problems;
  std::mutex mu;
  std::exception_ptr failure;
  std::atomic<int64_t> next{0};
  auto work = [&] {
    std::vector<uint8_t> rgb(image);
    for (int64_t p; (p = next++) < n;) {
      try {
        if (auto problem = fill(p, rgb.data())) {
          std::lock_guard<std::mutex> lock(mu);
          problems.emplace_back(p, std::move(*problem));
          continue;
        }
        write_all(fd, rgb.data(), image, static_cast<off_t>(l.pixels_at + image * static_cast<size_t>(p)), tmp);
        flags[static_cast<size_t>(p)] = 1;
      } catch (...) {
        std::lock_guard<std::mutex> lock(mu);
        if (!failure) failure = std::current_exception();
        next = n;
      }
    }
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < std::max(1, threads); ++t) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
  try {
    if (failure) std::rethrow_exception(failure);
    write_all(fd, flags.data(), flags.size(), static_cast<off_t>(l.flags_at), tmp);
    // ftruncate does not allocate: a full disk would surface later as SIGBUS on a page of the map. Reserve the space.
    if (const int e = ::posix_fallocate(fd, 0, static_cast<off_t>(l.total)); e != 0 && e != EOPNOTSUPP && e != EINVAL) {
      errno = e;
      throw io_error(tmp, "write");
    }
    if (::ftruncate(fd, static_cast<off_t>(l.total)) != 0) throw io_error(tmp, "size");
    // The checksum of flags and pixels, read back through a map of what was written (the page cache holds it).
    void* map = ::mmap(nullptr, l.total, PROT_READ, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) throw io_error(tmp, "map");
    const std::string sum = checksum(static_cast<const uint8_t*>(map) + l.flags_at, l.total - l.flags_at);
    ::munmap(map, l.total);
    std::string header = fmt::format("{}\nimages {}\nside {}\nsum {}\n", PixelCache::kFormat, n, side, sum);
    header.resize(kPage, '\0');
    write_all(fd, header.data(), header.size(), 0, tmp);
    if (::fsync(fd) != 0) throw io_error(tmp, "flush");
    const std::string problems_tmp = tmp + ".problems";
    std::ofstream out(problems_tmp);
    for (const auto& [p, pr] : problems) out << p << '\t' << pr.id << '\t' << pr.path << '\t' << pr.reason << '\n';
    out.close();
    if (!out) {
      std::filesystem::remove(problems_tmp, ec);
      throw errno_error(problems_path + ": cannot write the input cache's problems", errno ? errno : EIO);
    }
    std::filesystem::rename(problems_tmp, problems_path);
  } catch (...) {
    ::close(fd);
    std::filesystem::remove(tmp, ec);
    throw;
  }
  ::close(fd);
  std::filesystem::rename(tmp, path);  // last: the final name appears complete or not at all
}

std::unique_ptr<PixelCache> PixelCache::open(const std::string& path, int64_t n, int side, std::string& damage) {
  const std::string problems_path = path + ".problems";
  const Layout l(n, side);
  // What is wrong with the file ("" when nothing): the wrong size, not a cache, another checksum.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw io_error(path, "open");
  struct stat st {};
  ::fstat(fd, &st);
  damage.clear();
  void* map = MAP_FAILED;
  if (static_cast<size_t>(st.st_size) != l.total) {
    damage = fmt::format("{} bytes where {} were expected", st.st_size, l.total);
  } else {
    map = ::mmap(nullptr, l.total, PROT_READ, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) {
      const int e = errno;
      ::close(fd);
      errno = e;
      throw io_error(path, "map");
    }
    const auto* base = static_cast<const uint8_t*>(map);
    const char* header = reinterpret_cast<const char*>(base);
    const std::string sum = header_value(header, kPage, "sum");
    if (std::strncmp(header, PixelCache::kFormat, std::strlen(PixelCache::kFormat)) != 0 || sum.empty()) {
      damage = "not an xfer input cache (its header is gone)";
    } else {
      std::lock_guard<std::mutex> lock(checked_mu);
      if (checked[path] != file_stamp(st)) {
        if (checksum(base + l.flags_at, l.total - l.flags_at) != sum)
          damage = "its pixels no longer match the checksum in its header";
        else checked[path] = file_stamp(st);
      }
    }
  }
  ::close(fd);
  if (damage.empty()) {
    auto cache = std::unique_ptr<PixelCache>(new PixelCache());
    cache->path_ = path;
      cache->map_ = map;
    cache->map_bytes_ = l.total;
    const auto* base = static_cast<const uint8_t*>(map);
    cache->n_ = l.n;
    cache->side_ = side;
    cache->flags_ = base + l.flags_at;
    cache->pixels_ = base + l.pixels_at;
    std::ifstream in(problems_path);
    for (std::string line; std::getline(in, line);) {
      std::stringstream ss(line);
      std::string p, id, file, reason;
      std::getline(ss, p, '\t');
      std::getline(ss, id, '\t');
      std::getline(ss, file, '\t');
      std::getline(ss, reason);
      try {
        cache->problems_.emplace_back(std::stoll(p), Problem{id, file, reason});
      } catch (const std::exception&) {
        throw Error::environment(problems_path + ": a damaged line in the input cache's problems (\"" +
                                 line.substr(0, 80) + "\"); remove " + path + " and it to rebuild them");
      }
    }
    return cache;
  }
  if (map != MAP_FAILED) ::munmap(map, l.total);
  return nullptr;
}

const Problem& PixelCache::problem(int64_t position) const {
  for (const auto& [p, pr] : problems_)
    if (p == position) return pr;
  static const Problem none{"", "", "not decoded"};
  return none;
}

PixelCache::~PixelCache() {
  if (map_) ::munmap(map_, map_bytes_);
}

}  // namespace xfer::data
