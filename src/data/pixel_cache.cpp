#include "xfer/data/pixel_cache.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

#include <fmt/format.h>

#include "xfer/core/digest.hpp"
#include "xfer/core/error.hpp"

namespace xfer::data {

namespace {

constexpr size_t kPage = 4096;
constexpr char kMagic[] = "xfer-pixels 1";

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

}  // namespace

std::string PixelCache::key(const Dataset& d, const std::vector<int64_t>& indices, const TransformSettings& eval) {
  Sha256 h;
  h.update(fmt::format("{}\n{}\nsize {} crop_pct {:.17g} bgr {}\n", kMagic, d.name, eval.size, eval.crop_pct,
                       eval.bgr_quirk ? 1 : 0));
  for (int64_t i : indices) {
    const Sample& s = d.samples[static_cast<size_t>(i)];
    h.update(s.id);
    h.update("\t");
    for (const auto& p : s.paths) h.update(p + "\t");
    h.update("\n");
  }
  return h.hex();
}

std::unique_ptr<PixelCache> PixelCache::open_or_build(const std::string& folder, const Dataset& d,
                                                      const std::vector<int64_t>& indices,
                                                      const TransformSettings& eval_settings, int threads) {
  TransformSettings ts = eval_settings;
  ts.train = false;
  ts.augmentation = Augmentation::none;
  ts.flips = Flips::none;
  const std::string name = key(d, indices, ts).substr(0, 32);
  const std::string path = folder + "/" + name + ".u8", problems_path = path + ".problems";
  const int64_t n = static_cast<int64_t>(indices.size());
  const size_t image = static_cast<size_t>(ts.size) * ts.size * 3;
  const size_t flags_at = kPage, pixels_at = kPage + round_up(static_cast<size_t>(n));
  const size_t total = pixels_at + image * static_cast<size_t>(n);

  auto cache = std::unique_ptr<PixelCache>(new PixelCache());
  cache->path_ = path;
  if (!std::filesystem::exists(path)) {
    std::error_code ec;
    std::filesystem::create_directories(folder, ec);
    if (ec) {
      errno = ec.value();
      throw io_error(folder, "create the folder of");
    }
    const std::string tmp = fmt::format("{}.tmp.{}", path, ::getpid());
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) throw io_error(tmp, "create");
    std::vector<uint8_t> flags(static_cast<size_t>(n), 0);
    std::vector<std::pair<int64_t, Problem>> problems;
    std::mutex mu;
    std::exception_ptr failure;
    std::atomic<int64_t> next{0};
    const Transform transform(ts);
    auto work = [&] {
      std::vector<uint8_t> rgb(image);
      for (int64_t p; (p = next++) < n;) {
        try {
          const int64_t sample = indices[static_cast<size_t>(p)];
          try {
            const Image img = transform.pixels(d, sample, 0);
            if (img.channels == 3) {
              std::memcpy(rgb.data(), img.px.data(), image);
            } else {  // grey: replicated, as the normalisation does
              for (size_t i = 0; i < image / 3; ++i) rgb[3 * i] = rgb[3 * i + 1] = rgb[3 * i + 2] = img.px[i];
            }
            write_all(fd, rgb.data(), image, static_cast<off_t>(pixels_at + image * static_cast<size_t>(p)), tmp);
            flags[static_cast<size_t>(p)] = 1;
          } catch (const DecodeError& e) {
            const Sample& s = d.samples[static_cast<size_t>(sample)];
            std::lock_guard<std::mutex> lock(mu);
            problems.emplace_back(p, Problem{s.id, s.paths.empty() ? "" : s.paths[0], e.what()});
          }
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
      std::string header = fmt::format("{}\nimages {}\nside {}\n", kMagic, n, ts.size);
      header.resize(kPage, '\0');
      write_all(fd, header.data(), header.size(), 0, tmp);
      write_all(fd, flags.data(), flags.size(), static_cast<off_t>(flags_at), tmp);
      if (::ftruncate(fd, static_cast<off_t>(total)) != 0) throw io_error(tmp, "size");
      if (::fsync(fd) != 0) throw io_error(tmp, "flush");
      std::ofstream out(problems_path + ".tmp");
      for (const auto& [p, pr] : problems) out << p << '\t' << pr.id << '\t' << pr.path << '\t' << pr.reason << '\n';
      out.close();
      if (!out) throw io_error(problems_path, "write");
    } catch (...) {
      ::close(fd);
      std::filesystem::remove(tmp, ec);
      throw;
    }
    ::close(fd);
    std::filesystem::rename(problems_path + ".tmp", problems_path);
    std::filesystem::rename(tmp, path);  // last: the final name appears complete or not at all
    cache->built_now_ = true;
  }

  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw io_error(path, "open");
  struct stat st {};
  ::fstat(fd, &st);
  if (static_cast<size_t>(st.st_size) != total) {
    ::close(fd);
    throw Error(fmt::format("{}: an input cache of {} bytes where {} were expected; remove it to rebuild it", path,
                            st.st_size, total));
  }
  void* map = ::mmap(nullptr, total, PROT_READ, MAP_SHARED, fd, 0);
  ::close(fd);
  if (map == MAP_FAILED) throw io_error(path, "map");
  cache->map_ = map;
  cache->map_bytes_ = total;
  const auto* base = static_cast<const uint8_t*>(map);
  if (std::strncmp(reinterpret_cast<const char*>(base), kMagic, sizeof kMagic - 1) != 0)
    throw Error(path + ": not an xfer input cache; remove it to rebuild it");
  cache->n_ = n;
  cache->side_ = ts.size;
  cache->flags_ = base + flags_at;
  cache->pixels_ = base + pixels_at;
  std::ifstream in(problems_path);
  for (std::string line; std::getline(in, line);) {
    std::stringstream ss(line);
    std::string p, id, file, reason;
    std::getline(ss, p, '\t');
    std::getline(ss, id, '\t');
    std::getline(ss, file, '\t');
    std::getline(ss, reason);
    cache->problems_.emplace_back(std::stoll(p), Problem{id, file, reason});
  }
  return cache;
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
