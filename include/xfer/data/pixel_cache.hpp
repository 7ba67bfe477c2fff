// data/pixel_cache: a split decoded once into a memory-mapped file of uint8 S×S×3 images, for the device input
// pipeline (train/device_input): an epoch then reads rows of bytes instead of decoding JPEGs, and the crops, flips and
// normalisation run on the trial's device. Each image is the evaluation transform's output at the trial's size
// (resize the shorter side to S / crop_pct, centre-crop S; Pillow-exact, data/transform.hpp) — for training, with
// crop_pct 1, the square the device's random crops are drawn from. Samples that do not decode are marked and their
// problems kept. The file's name is a digest of what it holds (dataset, the split's sample ids, its files with their
// size, modification and status-change times and inode — or the pixels of images held in memory —, size, crop, colour order), so trials
// sharing a dataset and size share it, and anything else, changed images included, gets its own. It is written to a
// temporary name unique across hosts (mkstemp) and renamed, so ranks that build it at once, or a job killed while
// building it, never leave a partial file under the final name. Its header holds a checksum of its pixels, checked
// once per process: a truncated, zeroed or overwritten cache is built again (with a warning), and one damaged right
// after it was built is an environment error, as is a full disk while it is written. Plain C++ (OpenCV through data/'s
// transform for the decoding; the file itself, src/data/pixel_cache_file.cpp, needs neither: gpu_smoke writes and
// reads a synthetic cache through it on a machine without OpenCV).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "xfer/data/dataset.hpp"
#include "xfer/data/transform.hpp"

namespace xfer::data {

class PixelCache {
 public:
  // Opens the cache of `indices` of `d` under `folder`, building it first (with `threads` decode threads) if it is
  // not there. `eval` holds the settings' size, crop_pct and bgr_quirk (its train flag is ignored).
  static std::unique_ptr<PixelCache> open_or_build(const std::string& folder, const Dataset& d,
                                                   const std::vector<int64_t>& indices, const TransformSettings& eval,
                                                   int threads);
  // The digest naming the file (hex).
  static std::string key(const Dataset& d, const std::vector<int64_t>& indices, const TransformSettings& eval);
  // The pixels of position p into `rgb` (side × side × 3 bytes, RGB), or the problem why it has none.
  using Fill = std::function<std::optional<Problem>(int64_t position, uint8_t* rgb)>;
  // Writes a cache of `n` images of side × side at `path`, filled by `threads` threads: through a temporary name
  // renamed last, the checksum in its header, the problems in `path`.problems. open_or_build writes the decoded split
  // so; gpu_smoke a synthetic one.
  static void write(const std::string& path, int64_t n, int side, const Fill& fill, int threads);
  // Opens the cache at `path` holding `n` images of side × side (its checksum checked once per process); nullptr,
  // and `damage` saying what is wrong, when the file is not that (wrong size, no header, another checksum).
  static std::unique_ptr<PixelCache> open(const std::string& path, int64_t n, int side, std::string& damage);
  static constexpr const char* kFormat = "xfer-pixels 2";  // the header's first line, and part of the key
  ~PixelCache();
  PixelCache(const PixelCache&) = delete;
  PixelCache& operator=(const PixelCache&) = delete;

  int64_t size() const { return n_; }  // images (positions into the split's `indices`)
  int side() const { return side_; }
  size_t image_bytes() const { return static_cast<size_t>(side_) * side_ * 3; }
  bool usable(int64_t position) const { return flags_[position] != 0; }
  const uint8_t* image(int64_t position) const { return pixels_ + image_bytes() * static_cast<size_t>(position); }
  // The problem of an unusable position ("<path>: empty file").
  const Problem& problem(int64_t position) const;
  const std::string& path() const { return path_; }
  bool built_now() const { return built_now_; }  // false when an existing file was opened

 private:
  PixelCache() = default;
  std::string path_;
  int64_t n_ = 0;
  int side_ = 0;
  void* map_ = nullptr;
  size_t map_bytes_ = 0;
  const uint8_t* flags_ = nullptr;
  const uint8_t* pixels_ = nullptr;
  std::vector<std::pair<int64_t, Problem>> problems_;
  bool built_now_ = false;
};

}  // namespace xfer::data
