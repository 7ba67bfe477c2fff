// The transform's arithmetic that needs no decoder: RandomResizedCrop's box and the normalisation (its table too),
// shared by the host loader (data/transform) and the device pipeline (train/device_input). Plain C++, so gpu_smoke
// compiles it on a machine without OpenCV.
#include <cmath>

#include "xfer/data/transform.hpp"

namespace xfer::data {

Transform::Transform(TransformSettings s) : s_(std::move(s)) {
  if (s_.train && s_.augmentation == Augmentation::colour_affine) s_.scale_lo = 0.35;  // the recipe's stronger crop scale
  // torchvision: ToTensor divides by 255 in float32, Normalize subtracts and divides in float32.
  for (int c = 0; c < 3; ++c)
    for (int v = 0; v < 256; ++v) lut_[c][v] = (static_cast<float>(v) / 255.0f - s_.mean[c]) / s_.std[c];
}

void Transform::normalise(const Image& img, float* out) const {
  const size_t plane = static_cast<size_t>(img.rows) * img.cols;
  const uint8_t* p = img.px.data();
  if (img.channels == 1) {
    for (int c = 0; c < 3; ++c) {
      const auto& lut = lut_[c];
      float* o = out + c * plane;
      for (size_t i = 0; i < plane; ++i) o[i] = lut[p[i]];
    }
    return;
  }
  float* r = out;
  float* g = out + plane;
  float* b = out + 2 * plane;
  for (size_t i = 0; i < plane; ++i) {
    r[i] = lut_[0][p[3 * i]];
    g[i] = lut_[1][p[3 * i + 1]];
    b[i] = lut_[2][p[3 * i + 2]];
  }
}

CropBox random_resized_crop_box(int rows, int cols, double scale_lo, double scale_hi, double ratio_lo,
                                double ratio_hi, Rng& rng) {
  const double area = static_cast<double>(rows) * cols;
  const double log_lo = std::log(ratio_lo), log_hi = std::log(ratio_hi);
  for (int attempt = 0; attempt < 10; ++attempt) {
    const double target_area = area * rng.uniform(scale_lo, scale_hi);
    const double aspect = std::exp(rng.uniform(log_lo, log_hi));
    // Python's round(): half to even, as std::nearbyint in the default rounding mode.
    const int w = static_cast<int>(std::nearbyint(std::sqrt(target_area * aspect)));
    const int h = static_cast<int>(std::nearbyint(std::sqrt(target_area / aspect)));
    if (0 < w && w <= cols && 0 < h && h <= rows) {
      const int top = static_cast<int>(rng.below(rows - h + 1));
      const int left = static_cast<int>(rng.below(cols - w + 1));
      return {top, left, h, w};
    }
  }
  // Fallback to a central crop.
  const double in_ratio = static_cast<double>(cols) / rows;
  int w, h;
  if (in_ratio < ratio_lo) {
    w = cols;
    h = static_cast<int>(std::nearbyint(w / ratio_lo));
  } else if (in_ratio > ratio_hi) {
    h = rows;
    w = static_cast<int>(std::nearbyint(h * ratio_hi));
  } else {
    w = cols;
    h = rows;
  }
  return {(rows - h) / 2, (cols - w) / 2, h, w};
}

}  // namespace xfer::data
