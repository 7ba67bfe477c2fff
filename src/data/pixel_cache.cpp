#include "xfer/data/pixel_cache.hpp"

#include <sys/stat.h>

#include <cstring>
#include <filesystem>
#include <optional>
#include <unordered_map>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "xfer/core/digest.hpp"
#include "xfer/core/error.hpp"

namespace xfer::data {

// Defined in pixel_cache_file.cpp, with the rest of the file format.
std::string file_stamp(const struct stat& st);

std::string PixelCache::key(const Dataset& d, const std::vector<int64_t>& indices, const TransformSettings& eval) {
  Sha256 h;
  h.update(fmt::format("{}\n{}\nsize {} crop_pct {:.17g} bgr {}\n", kFormat, d.name, eval.size, eval.crop_pct,
                       eval.bgr_quirk ? 1 : 0));
  // What each sample's file holds, not only its name: size, modification and change times and inode of every file
  // (swapped, re-encoded or edited images change at least one), the pixels of images held in memory. Each file is
  // looked at once (HPA's planes, shared files).
  std::unordered_map<std::string, std::string> seen;
  auto identity = [&](const std::string& path) -> const std::string& {
    auto [it, fresh] = seen.try_emplace(path);
    if (fresh) {
      struct stat st {};
      it->second = ::stat(path.c_str(), &st) != 0 ? std::string("missing") : file_stamp(st);
    }
    return it->second;
  };
  for (int64_t i : indices) {
    const Sample& s = d.samples[static_cast<size_t>(i)];
    h.update(s.id);
    h.update("\t");
    for (const auto& p : s.paths) h.update(p + "\t" + identity(p) + "\t");
    if (d.memory && s.memory_index >= 0 && s.memory_index < d.memory->n)
      h.update(std::string_view(reinterpret_cast<const char*>(d.memory->image(s.memory_index)),
                                static_cast<size_t>(d.memory->rows) * static_cast<size_t>(d.memory->cols)));
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
  const std::string path = folder + "/" + key(d, indices, ts).substr(0, 32) + ".u8";
  const auto n = static_cast<int64_t>(indices.size());
  const size_t image = static_cast<size_t>(ts.size) * ts.size * 3;
  const Transform transform(ts);
  // Each position's image as the evaluation transform gives it (grey replicated, as the normalisation does); an
  // undecodable one is its problem.
  const Fill decode = [&](int64_t p, uint8_t* rgb) -> std::optional<Problem> {
    const int64_t sample = indices[static_cast<size_t>(p)];
    try {
      const Image img = transform.pixels(d, sample, 0);
      if (img.channels == 3) std::memcpy(rgb, img.px.data(), image);
      else
        for (size_t i = 0; i < image / 3; ++i) rgb[3 * i] = rgb[3 * i + 1] = rgb[3 * i + 2] = img.px[i];
      return std::nullopt;
    } catch (const DecodeError& e) {
      const Sample& s = d.samples[static_cast<size_t>(sample)];
      return Problem{s.id, s.paths.empty() ? "" : s.paths[0], e.what()};
    }
  };
  bool built_now = false;
  for (int round = 0;; ++round) {
    if (!std::filesystem::exists(path)) {
      write(path, n, ts.size, decode, threads);
      built_now = true;
    }
    std::string damage;
    if (auto cache = open(path, n, ts.size, damage)) {
      cache->built_now_ = built_now;
      return cache;
    }
    // A damaged cache is derived data: set aside and built again, once. Damaged again right after it was built,
    // the disk or file system is at fault, not the trial: an environment error.
    if (round > 0 || built_now)
      throw Error::environment(fmt::format("{}: the input cache is damaged right after it was built ({}): the disk or "
                                           "file system does not keep what is written to it",
                                           path, damage));
    spdlog::warn("{}: the input cache is damaged ({}); building it again", path, damage);
    std::error_code ec;
    std::filesystem::remove(path, ec);
    if (ec && std::filesystem::exists(path)) {
      errno = ec.value();
      throw errno_error(fmt::format("{}: cannot remove the damaged the input cache", path), errno);
    }
  }
}

}  // namespace xfer::data
