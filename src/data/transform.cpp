#include "xfer/data/transform.hpp"

#include <algorithm>
#include <cmath>

namespace xfer::data {

// Defined in image.cpp.
Image resize_box_pil_bilinear(const Image& src, const CropBox& b, int size);

namespace {
void flip_horizontal(Image& img) {
  for (int y = 0; y < img.rows; ++y) {
    uint8_t* r = img.row(y);
    for (int a = 0, b = img.cols - 1; a < b; ++a, --b)
      for (int c = 0; c < img.channels; ++c) std::swap(r[a * img.channels + c], r[b * img.channels + c]);
  }
}
void flip_vertical(Image& img) {
  const size_t stride = static_cast<size_t>(img.cols) * img.channels;
  for (int a = 0, b = img.rows - 1; a < b; ++a, --b) std::swap_ranges(img.row(a), img.row(a) + stride, img.row(b));
}
}  // namespace

Image Transform::pixels_from(const Image& decoded, int64_t index, int epoch) const {
  const int S = s_.size;
  if (!s_.train) {
    // Resize(int(S / crop_pct)) then CenterCrop(S), computing only the crop window.
    const int R = static_cast<int>(std::floor(S / s_.crop_pct + 1e-9));
    const int w = decoded.cols, h = decoded.rows;
    int new_w, new_h;
    if (w <= h) new_w = R, new_h = static_cast<int>(static_cast<double>(R) * h / w);
    else new_h = R, new_w = static_cast<int>(static_cast<double>(R) * w / h);
    const int top = static_cast<int>(std::nearbyint((new_h - S) / 2.0));
    const int left = static_cast<int>(std::nearbyint((new_w - S) / 2.0));
    return resize_pil_bilinear(decoded, new_w, new_h, left, top, S, S);
  }
  Rng rng = Rng::derive(s_.seed, static_cast<uint64_t>(epoch), static_cast<uint64_t>(index));
  const CropBox box =
      random_resized_crop_box(decoded.rows, decoded.cols, s_.scale_lo, s_.scale_hi, s_.ratio_lo, s_.ratio_hi, rng);
  Image img = resize_box_pil_bilinear(decoded, box, S);
  if (s_.flips == Flips::h || s_.flips == Flips::hv)
    if (rng.uniform() < 0.5) flip_horizontal(img);
  if (s_.flips == Flips::hv)
    if (rng.uniform() < 0.5) flip_vertical(img);
  if (s_.augmentation == Augmentation::randaugment) rand_augment(img, 2, 9, rng);
  else if (s_.augmentation == Augmentation::augmix) aug_mix(img, 3, 3, rng);
  else if (s_.augmentation == Augmentation::colour_affine) colour_jitter_rotate(img, 0.4, 30.0, rng);
  return img;
}

Image Transform::pixels(const Dataset& d, int64_t index, int epoch) const {
  return pixels_from(decode(d, index, s_.bgr_quirk), index, epoch);
}

void Transform::operator()(const Dataset& d, int64_t index, int epoch, float* out) const {
  normalise(pixels(d, index, epoch), out);
}

}  // namespace xfer::data
