// data/transform: from a sample to a normalised C×S×S float tensor, as torchvision does it — decode (OpenCV),
// RandomResizedCrop + flips (+ an extra augmentation recipe) for training, resize shorter side + centre crop for
// evaluation — deterministic in (trial seed, epoch, sample index).
//
// Resampling is Pillow's BILINEAR filter with antialiasing (the filter torchvision's Resize applies to PIL images,
// i.e. what the paper ran), reimplemented exactly: same coefficients, same 22-bit fixed-point rounding. The eval
// transform therefore matches torchvision's to the bit on the same decoded pixels (tests/unit/transform_test.cpp).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "xfer/core/vocabulary.hpp"
#include "xfer/data/dataset.hpp"
#include "xfer/data/numpy_random.hpp"

namespace xfer::data {

// An 8-bit image, rows × cols × channels (1 or 3), row-major, channels in RGB order unless bgr_quirk.
struct Image {
  int rows = 0, cols = 0, channels = 0;
  std::vector<uint8_t> px;
  uint8_t* row(int y) { return px.data() + static_cast<size_t>(y) * cols * channels; }
  const uint8_t* row(int y) const { return px.data() + static_cast<size_t>(y) * cols * channels; }
};

// A sample that cannot be decoded: corrupt, truncated, unsupported, empty or unreadable. Names the file.
class DecodeError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Reads and decodes a sample: JPEG/PNG/TIFF/BMP/WebP, grey, RGB or RGBA (alpha dropped, as PIL's convert("RGB")),
// 16-bit scaled to 8 (round(v / 257)); EXIF orientation is ignored, as PIL's loader ignores it. HPA's four planes
// become R, G, B (yellow dropped). Grey stays one channel (replicated when normalised). bgr_quirk keeps OpenCV's
// B, G, R order, as the released code fed it.
Image decode(const Dataset& d, int64_t index, bool bgr_quirk);
Image decode_file(const std::string& path, bool bgr_quirk);

// The decompression-bomb guard: an image whose header declares more than max_image_pixels() pixels is a
// DecodeError ("<path>: PNG 20000×20000 = 400 M pixels, over the limit of 89.5 M (XFER_MAX_IMAGE_PIXELS); not
// decoded") raised before any pixel is decoded, so the sample is skipped and reported like any undecodable one. The
// limit is Pillow's MAX_IMAGE_PIXELS, 89,478,485 (≈ 9459 × 9459), unless the environment variable
// XFER_MAX_IMAGE_PIXELS gives another (a whole number; 0: no limit of xfer's own). Read when a dataset is opened
// (a malformed value is an input error there) and at each decode. Headers read: PNG IHDR, JPEG SOF0..SOF15 (the
// frame header, so a JPEG claiming 20000×20000 with data for 16×16 is caught too), BMP, TIFF (first IFD), WebP
// (VP8, VP8L, VP8X) and PNM; other formats decode through OpenCV under its own limit (2^30 pixels).
constexpr int64_t kDefaultMaxImagePixels = 89478485;
int64_t max_image_pixels();
struct ImageHeader {
  std::string format;
  uint64_t width = 0, height = 0;
};
// Width and height as an image file's header declares them; nullopt for a format not recognised.
std::optional<ImageHeader> image_header(const std::vector<uint8_t>& bytes);

// Pillow's BILINEAR (antialiased) resize of `src` to out_cols × out_rows. Only the output window
// [x0, x0 + w) × [y0, y0 + h) is computed (the crop that follows), exactly as if the whole image were resized.
Image resize_pil_bilinear(const Image& src, int out_cols, int out_rows, int x0, int y0, int w, int h);
Image resize_pil_bilinear(const Image& src, int out_cols, int out_rows);
Image crop(const Image& src, int top, int left, int height, int width);

// torchvision.transforms.RandomResizedCrop.get_params with xfer's generator in place of torch's.
struct CropBox {
  int top = 0, left = 0, height = 0, width = 0;
};
CropBox random_resized_crop_box(int rows, int cols, double scale_lo, double scale_hi, double ratio_lo,
                                double ratio_hi, Rng& rng);

// The extra-augmentation recipes (torchvision semantics, OpenCV operations), on an S×S RGB image.
void rand_augment(Image& img, int num_ops, int magnitude, Rng& rng);  // RandAugment(N, M), 31 bins
void aug_mix(Image& img, int severity, int width, Rng& rng);          // AugMix(severity, width, depth 1–3, α = 1)
void colour_jitter_rotate(Image& img, double jitter, double degrees, Rng& rng);

struct TransformSettings {
  int size = 224;            // S
  double crop_pct = 1.0;     // eval: resize shorter side to int(S / crop_pct), centre-crop S
  std::array<float, 3> mean{0.485f, 0.456f, 0.406f};
  std::array<float, 3> std{0.229f, 0.224f, 0.225f};
  bool train = false;
  double scale_lo = 0.65, scale_hi = 1.0;            // the paper's RandomResizedCrop scale
  double ratio_lo = 3.0 / 4.0, ratio_hi = 4.0 / 3.0;
  Flips flips = Flips::none;
  Augmentation augmentation = Augmentation::none;
  bool bgr_quirk = false;
  uint64_t seed = 0;                                 // the trial's seed
};

class Transform {
 public:
  explicit Transform(TransformSettings s);
  const TransformSettings& settings() const { return s_; }
  int channels() const { return 3; }
  // Writes 3 × S × S float32 for sample `index` of `d`. Throws DecodeError.
  void operator()(const Dataset& d, int64_t index, int epoch, float* out) const;
  // The uint8 S×S image before normalisation (what the evaluation cache keeps).
  Image pixels(const Dataset& d, int64_t index, int epoch) const;
  Image pixels_from(const Image& decoded, int64_t index, int epoch) const;
  // Normalises an S×S uint8 image into out (C×S×S), with torchvision's float32 arithmetic.
  void normalise(const Image& img, float* out) const;
  // normalise()'s lookup table, per channel and byte value (the device pipeline looks up the same values).
  const std::array<std::array<float, 256>, 3>& normalisation_table() const { return lut_; }

 private:
  TransformSettings s_;
  std::array<std::array<float, 256>, 3> lut_{};
};

}  // namespace xfer::data
