// The extra-augmentation recipes of the paper's "additional augmentation" runs: RandAugment (Cubuk et al. 2020)
// and AugMix (Hendrycks et al. 2020) with torchvision 0.14's operation sets and magnitude tables, and a colour
// jitter + rotation recipe. Operations follow PIL/torchvision definitions on uint8 RGB; geometric ones use nearest
// interpolation and zero fill, as torchvision's defaults.
#include <algorithm>
#include <array>
#include <cmath>

#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include "xfer/data/transform.hpp"

namespace xfer::data {

namespace {

enum class Op {
  identity, shear_x, shear_y, translate_x, translate_y, rotate, brightness, color, contrast, sharpness, posterize,
  solarize, autocontrast, equalize
};

cv::Mat as_mat(Image& img) { return cv::Mat(img.rows, img.cols, CV_8UC3, img.px.data()); }

void warp(cv::Mat& m, const cv::Mat& forward, int interpolation) {
  cv::Mat out;
  cv::warpAffine(m, out, forward, m.size(), interpolation, cv::BORDER_CONSTANT, cv::Scalar(0, 0, 0));
  out.copyTo(m);
}

// out = a + f · (b - a), clipped: PIL's Image.blend as ImageEnhance uses it (a = degenerate image).
void blend(cv::Mat& img, const cv::Mat& degenerate, double f) {
  for (int y = 0; y < img.rows; ++y) {
    uint8_t* p = img.ptr<uint8_t>(y);
    const uint8_t* d = degenerate.ptr<uint8_t>(y);
    for (int i = 0; i < img.cols * 3; ++i) {
      const double v = d[i] + f * (static_cast<double>(p[i]) - d[i]);
      p[i] = static_cast<uint8_t>(v < 0 ? 0 : (v > 255 ? 255 : v));
    }
  }
}

cv::Mat grey3(const cv::Mat& img) {
  // PIL's L conversion: L = R·299/1000 + G·587/1000 + B·114/1000.
  cv::Mat g(img.size(), CV_8UC3);
  for (int y = 0; y < img.rows; ++y) {
    const uint8_t* p = img.ptr<uint8_t>(y);
    uint8_t* q = g.ptr<uint8_t>(y);
    for (int x = 0; x < img.cols; ++x) {
      const int l = (p[3 * x] * 299 + p[3 * x + 1] * 587 + p[3 * x + 2] * 114 + 500) / 1000;
      q[3 * x] = q[3 * x + 1] = q[3 * x + 2] = static_cast<uint8_t>(l);
    }
  }
  return g;
}

void apply(cv::Mat& m, Op op, double mag) {
  const double cx = m.cols * 0.5, cy = m.rows * 0.5;
  switch (op) {
    case Op::identity: break;
    case Op::shear_x: {  // x_in = x_out + s·y_out (centre at the origin, as torchvision's RandAugment)
      cv::Mat inv = (cv::Mat_<double>(2, 3) << 1, mag, 0, 0, 1, 0);
      cv::Mat out;
      cv::warpAffine(m, out, inv, m.size(), cv::INTER_NEAREST | cv::WARP_INVERSE_MAP, cv::BORDER_CONSTANT, 0);
      out.copyTo(m);
      break;
    }
    case Op::shear_y: {
      cv::Mat inv = (cv::Mat_<double>(2, 3) << 1, 0, 0, mag, 1, 0);
      cv::Mat out;
      cv::warpAffine(m, out, inv, m.size(), cv::INTER_NEAREST | cv::WARP_INVERSE_MAP, cv::BORDER_CONSTANT, 0);
      out.copyTo(m);
      break;
    }
    case Op::translate_x: warp(m, (cv::Mat_<double>(2, 3) << 1, 0, static_cast<int>(mag), 0, 1, 0), cv::INTER_NEAREST); break;
    case Op::translate_y: warp(m, (cv::Mat_<double>(2, 3) << 1, 0, 0, 0, 1, static_cast<int>(mag)), cv::INTER_NEAREST); break;
    case Op::rotate: warp(m, cv::getRotationMatrix2D(cv::Point2f(cx - 0.5, cy - 0.5), mag, 1.0), cv::INTER_NEAREST); break;
    case Op::brightness: blend(m, cv::Mat::zeros(m.size(), CV_8UC3), 1.0 + mag); break;
    case Op::color: blend(m, grey3(m), 1.0 + mag); break;
    case Op::contrast: {
      const cv::Mat g = grey3(m);
      const int mean = static_cast<int>(cv::mean(g)[0] + 0.5);
      blend(m, cv::Mat(m.size(), CV_8UC3, cv::Scalar(mean, mean, mean)), 1.0 + mag);
      break;
    }
    case Op::sharpness: {
      // PIL's SMOOTH kernel [[1,1,1],[1,5,1],[1,1,1]] / 13; the border keeps the original pixels.
      cv::Mat k = (cv::Mat_<float>(3, 3) << 1, 1, 1, 1, 5, 1, 1, 1, 1) / 13.0f;
      cv::Mat smooth;
      cv::filter2D(m, smooth, -1, k, cv::Point(-1, -1), 0, cv::BORDER_REPLICATE);
      m.row(0).copyTo(smooth.row(0));
      m.row(m.rows - 1).copyTo(smooth.row(m.rows - 1));
      m.col(0).copyTo(smooth.col(0));
      m.col(m.cols - 1).copyTo(smooth.col(m.cols - 1));
      blend(m, smooth, 1.0 + mag);
      break;
    }
    case Op::posterize: {
      const int bits = std::clamp(static_cast<int>(mag), 0, 8);
      const uint8_t mask = static_cast<uint8_t>(~((1 << (8 - bits)) - 1));
      m &= cv::Scalar(mask, mask, mask);
      break;
    }
    case Op::solarize: {
      for (int y = 0; y < m.rows; ++y) {
        uint8_t* p = m.ptr<uint8_t>(y);
        for (int i = 0; i < m.cols * 3; ++i)
          if (p[i] >= mag) p[i] = static_cast<uint8_t>(255 - p[i]);
      }
      break;
    }
    case Op::autocontrast: {
      std::vector<cv::Mat> ch;
      cv::split(m, ch);
      for (auto& c : ch) {
        double lo, hi;
        cv::minMaxLoc(c, &lo, &hi);
        if (hi > lo) c.convertTo(c, CV_8U, 255.0 / (hi - lo), -lo * 255.0 / (hi - lo));
      }
      cv::merge(ch, m);
      break;
    }
    case Op::equalize: {
      // PIL's ImageOps.equalize, per channel.
      std::vector<cv::Mat> ch;
      cv::split(m, ch);
      for (auto& c : ch) {
        int hist[256] = {0};
        for (int y = 0; y < c.rows; ++y)
          for (int x = 0; x < c.cols; ++x) hist[c.at<uint8_t>(y, x)]++;
        int last = 255;
        while (last > 0 && hist[last] == 0) --last;
        int total = 0;
        for (int i = 0; i < 256; ++i) total += hist[i];
        const int step = (total - hist[last]) / 255;
        if (step == 0) continue;
        uint8_t lut[256];
        int n = step / 2;
        for (int i = 0; i < 256; ++i) {
          lut[i] = static_cast<uint8_t>(std::min(255, n / step));
          n += hist[i];
        }
        for (int y = 0; y < c.rows; ++y)
          for (int x = 0; x < c.cols; ++x) c.at<uint8_t>(y, x) = lut[c.at<uint8_t>(y, x)];
      }
      cv::merge(ch, m);
      break;
    }
  }
}

double linspace(double lo, double hi, int bins, int i) { return bins == 1 ? lo : lo + (hi - lo) * i / (bins - 1); }

void ensure_rgb(Image& img) {
  if (img.channels == 3) return;
  Image out;
  out.rows = img.rows;
  out.cols = img.cols;
  out.channels = 3;
  out.px.resize(img.px.size() * 3);
  for (size_t i = 0; i < img.px.size(); ++i) out.px[3 * i] = out.px[3 * i + 1] = out.px[3 * i + 2] = img.px[i];
  img = std::move(out);
}

}  // namespace

void rand_augment(Image& img, int num_ops, int magnitude, Rng& rng) {
  ensure_rgb(img);
  cv::Mat m = as_mat(img);
  constexpr int kBins = 31;
  static const Op kOps[] = {Op::identity, Op::shear_x,   Op::shear_y,    Op::translate_x, Op::translate_y,
                            Op::rotate,   Op::brightness, Op::color,     Op::contrast,    Op::sharpness,
                            Op::posterize, Op::solarize,  Op::autocontrast, Op::equalize};
  for (int i = 0; i < num_ops; ++i) {
    const Op op = kOps[rng.below(std::size(kOps))];
    double mag = 0;
    bool is_signed = true;
    switch (op) {
      case Op::shear_x:
      case Op::shear_y: mag = linspace(0, 0.3, kBins, magnitude); break;
      case Op::translate_x: mag = linspace(0, 150.0 / 331.0 * img.cols, kBins, magnitude); break;
      case Op::translate_y: mag = linspace(0, 150.0 / 331.0 * img.rows, kBins, magnitude); break;
      case Op::rotate: mag = linspace(0, 30.0, kBins, magnitude); break;
      case Op::brightness:
      case Op::color:
      case Op::contrast:
      case Op::sharpness: mag = linspace(0, 0.9, kBins, magnitude); break;
      case Op::posterize: mag = 8 - std::nearbyint(magnitude / ((kBins - 1) / 4.0)), is_signed = false; break;
      case Op::solarize: mag = linspace(255.0, 0.0, kBins, magnitude), is_signed = false; break;
      default: is_signed = false; break;
    }
    if (is_signed && rng.below(2)) mag = -mag;
    apply(m, op, mag);
  }
}

void aug_mix(Image& img, int severity, int width, Rng& rng) {
  ensure_rgb(img);
  constexpr int kBins = 10;  // torchvision's _PARAMETER_MAX
  static const Op kOps[] = {Op::shear_x,  Op::shear_y,   Op::translate_x, Op::translate_y, Op::rotate,
                            Op::posterize, Op::solarize, Op::autocontrast, Op::equalize,   Op::brightness,
                            Op::color,     Op::contrast, Op::sharpness};
  const double m = rng.beta(1.0, 1.0);  // weight of the original image
  std::vector<double> w(width);
  double wsum = 0;
  for (auto& x : w) wsum += (x = rng.gamma(1.0));
  cv::Mat orig = as_mat(img).clone();
  cv::Mat mix;
  orig.convertTo(mix, CV_64FC3, m);
  for (int i = 0; i < width; ++i) {
    cv::Mat aug = orig.clone();
    const int depth = 1 + static_cast<int>(rng.below(3));
    for (int d = 0; d < depth; ++d) {
      const Op op = kOps[rng.below(std::size(kOps))];
      const int bin = static_cast<int>(rng.below(severity));
      double mag = 0;
      bool is_signed = true;
      switch (op) {
        case Op::shear_x:
        case Op::shear_y: mag = linspace(0, 0.3, kBins, bin); break;
        case Op::translate_x: mag = linspace(0, img.cols / 3.0, kBins, bin); break;
        case Op::translate_y: mag = linspace(0, img.rows / 3.0, kBins, bin); break;
        case Op::rotate: mag = linspace(0, 30.0, kBins, bin); break;
        case Op::posterize: mag = 4 - std::nearbyint(bin / ((kBins - 1) / 4.0)), is_signed = false; break;
        case Op::solarize: mag = linspace(255.0, 0.0, kBins, bin), is_signed = false; break;
        case Op::brightness:
        case Op::color:
        case Op::contrast:
        case Op::sharpness: mag = linspace(0, 0.9, kBins, bin); break;
        default: is_signed = false; break;
      }
      if (is_signed && rng.below(2)) mag = -mag;
      apply(aug, op, mag);
    }
    cv::Mat augd;
    aug.convertTo(augd, CV_64FC3);
    mix += augd * ((1.0 - m) * w[i] / wsum);
  }
  cv::Mat out;
  mix.convertTo(out, CV_8UC3);
  out.copyTo(as_mat(img));
}

void colour_jitter_rotate(Image& img, double jitter, double degrees, Rng& rng) {
  ensure_rgb(img);
  cv::Mat m = as_mat(img);
  // torchvision ColorJitter(brightness, contrast, saturation = jitter): factors in [1-j, 1+j], random order.
  std::array<int, 3> order{0, 1, 2};
  for (int i = 2; i > 0; --i) std::swap(order[i], order[rng.below(i + 1)]);
  const double f[3] = {rng.uniform(1 - jitter, 1 + jitter), rng.uniform(1 - jitter, 1 + jitter),
                       rng.uniform(1 - jitter, 1 + jitter)};
  for (int k : order) {
    if (k == 0) apply(m, Op::brightness, f[0] - 1.0);
    else if (k == 1) apply(m, Op::contrast, f[1] - 1.0);
    else apply(m, Op::color, f[2] - 1.0);
  }
  const double angle = rng.uniform(-degrees, degrees);
  warp(m, cv::getRotationMatrix2D(cv::Point2f(m.cols * 0.5f - 0.5f, m.rows * 0.5f - 0.5f), angle, 1.0), cv::INTER_LINEAR);
}

}  // namespace xfer::data
