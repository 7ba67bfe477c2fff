// Decoding (OpenCV imgcodecs) and Pillow-exact bilinear resampling.
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <optional>
#include <cmath>
#include <cstring>
#include <fstream>
#include <mutex>

#include <csetjmp>
#include <cstdio>

#include <fmt/format.h>
#include <jpeglib.h>
#include <jerror.h>
#include <opencv2/core.hpp>
#include <opencv2/core/utils/logger.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "xfer/core/error.hpp"
#include "xfer/data/transform.hpp"

namespace xfer::data {

int64_t max_image_pixels() {
  const char* v = std::getenv("XFER_MAX_IMAGE_PIXELS");
  if (!v || !*v) return kDefaultMaxImagePixels;
  char* end = nullptr;
  errno = 0;
  const long long n = std::strtoll(v, &end, 10);
  if (errno != 0 || *end != '\0' || n < 0)
    throw Error::input(std::string("XFER_MAX_IMAGE_PIXELS: expected a whole number of pixels ≥ 0 (0: no limit), got '") +
                       v + "'");
  return static_cast<int64_t>(n);
}

namespace {

void quiet_opencv() {
  static std::once_flag once;
  std::call_once(once, [] { cv::utils::logging::setLogLevel(cv::utils::logging::LOG_LEVEL_SILENT); });
}

bool read_bytes(const std::string& path, std::vector<uint8_t>& buf) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) return false;
  const std::streamsize n = in.tellg();
  if (n < 0) return false;
  buf.resize(static_cast<size_t>(n));
  in.seekg(0);
  return n == 0 || static_cast<bool>(in.read(reinterpret_cast<char*>(buf.data()), n));
}

// libjpeg decodes a truncated JPEG into a grey-padded image with only a warning, and Pillow refuses it ("image
// file is truncated"): refuse it too. A JPEG must end with EOI (FFD9), a PNG with an IEND chunk.
void check_complete(const std::string& path, const std::vector<uint8_t>& b) {
  if (b.size() >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF) {
    const size_t from = b.size() > 1024 ? b.size() - 1024 : 0;
    for (size_t i = b.size() - 1; i > from; --i)
      if (b[i - 1] == 0xFF && b[i] == 0xD9) return;
    throw DecodeError(path + ": truncated JPEG (no end-of-image marker)");
  }
  static const uint8_t kPng[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  if (b.size() >= 8 && std::equal(kPng, kPng + 8, b.begin())) {
    const size_t from = b.size() > 64 ? b.size() - 64 : 0;
    for (size_t i = from; i + 4 <= b.size(); ++i)
      if (b[i] == 'I' && b[i + 1] == 'E' && b[i + 2] == 'N' && b[i + 3] == 'D') return;
    throw DecodeError(path + ": truncated PNG (no IEND chunk)");
  }
}

uint32_t be16(const std::vector<uint8_t>& b, size_t i) { return (uint32_t(b[i]) << 8) | b[i + 1]; }
uint32_t be32(const std::vector<uint8_t>& b, size_t i) { return (be16(b, i) << 16) | be16(b, i + 2); }
uint32_t le16(const std::vector<uint8_t>& b, size_t i) { return (uint32_t(b[i + 1]) << 8) | b[i]; }
uint32_t le32(const std::vector<uint8_t>& b, size_t i) { return (le16(b, i + 2) << 16) | le16(b, i); }

// JPEG: the first start-of-frame segment (SOF0..SOF15 but DHT C4, JPG C8, DAC CC), walking the marker segments.
std::optional<ImageHeader> jpeg_header(const std::vector<uint8_t>& b) {
  size_t i = 2;
  while (i + 4 <= b.size()) {
    if (b[i] != 0xFF) return std::nullopt;
    const uint8_t m = b[i + 1];
    if (m == 0xFF) { ++i; continue; }  // fill byte
    if (m == 0xD8 || m == 0x01 || (m >= 0xD0 && m <= 0xD7)) { i += 2; continue; }  // no length
    if (m == 0xD9 || m == 0xDA) return std::nullopt;  // end of image, start of scan before any frame header
    const size_t len = be16(b, i + 2);
    if (m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC) {
      if (i + 9 > b.size()) return std::nullopt;
      return ImageHeader{"JPEG", be16(b, i + 7), be16(b, i + 5)};
    }
    if (len < 2) return std::nullopt;
    i += 2 + len;
  }
  return std::nullopt;
}

// TIFF: ImageWidth (256) and ImageLength (257) of the first IFD.
std::optional<ImageHeader> tiff_header(const std::vector<uint8_t>& b) {
  const bool le = b[0] == 'I';
  auto u16 = [&](size_t i) { return le ? le16(b, i) : be16(b, i); };
  auto u32 = [&](size_t i) { return le ? le32(b, i) : be32(b, i); };
  const size_t ifd = u32(4);
  if (ifd + 2 > b.size()) return std::nullopt;
  const size_t n = u16(ifd);
  uint64_t w = 0, h = 0;
  for (size_t e = 0; e < n && ifd + 2 + 12 * (e + 1) <= b.size(); ++e) {
    const size_t at = ifd + 2 + 12 * e;
    const uint32_t tag = u16(at), type = u16(at + 2);
    const uint64_t v = type == 3 ? u16(at + 8) : type == 4 ? u32(at + 8) : 0;
    if (tag == 256) w = v;
    if (tag == 257) h = v;
  }
  if (w == 0 || h == 0) return std::nullopt;
  return ImageHeader{"TIFF", w, h};
}

// PNM (P1..P6): "P<n> <width> <height>", with # comments.
std::optional<ImageHeader> pnm_header(const std::vector<uint8_t>& b) {
  size_t i = 2;
  uint64_t v[2] = {0, 0};
  for (int k = 0; k < 2; ++k) {
    while (i < b.size() && (std::isspace(b[i]) || b[i] == '#')) {
      if (b[i] == '#') while (i < b.size() && b[i] != '\n') ++i;
      else ++i;
    }
    if (i >= b.size() || !std::isdigit(b[i])) return std::nullopt;
    while (i < b.size() && std::isdigit(b[i]) && v[k] < (uint64_t(1) << 40)) v[k] = v[k] * 10 + (b[i++] - '0');
  }
  return ImageHeader{"PNM", v[0], v[1]};
}

// WebP: the canvas of VP8X, or the frame of a simple lossy (VP8) or lossless (VP8L) file.
std::optional<ImageHeader> webp_header(const std::vector<uint8_t>& b) {
  if (b.size() < 30) return std::nullopt;
  const std::string chunk(b.begin() + 12, b.begin() + 16);
  if (chunk == "VP8X")
    return ImageHeader{"WebP", 1 + (le32(b, 24) & 0xFFFFFF), 1 + (le32(b, 27) & 0xFFFFFF)};
  if (chunk == "VP8L" && b[20] == 0x2F) {
    const uint32_t bits = le32(b, 21);
    return ImageHeader{"WebP", 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)};
  }
  if (chunk == "VP8 " && b[23] == 0x9D && b[24] == 0x01 && b[25] == 0x2A)
    return ImageHeader{"WebP", le16(b, 26) & 0x3FFF, le16(b, 28) & 0x3FFF};
  return std::nullopt;
}

std::string megapixels(double px) {
  const double m = px / 1e6;
  return m >= 100 ? fmt::format("{:.0f} M", m) : m >= 0.1 ? fmt::format("{:.1f} M", m) : fmt::format("{:.0f}", px);
}

// An image whose header declares more pixels than the limit is refused before anything is decoded (a
// decompression bomb: a 1 MB PNG of zeros can declare 20000×20000, 1.2 GB of pixels per decode and per thread).
void check_pixel_limit(const std::string& path, const std::vector<uint8_t>& b) {
  const int64_t limit = max_image_pixels();
  if (limit <= 0) return;
  const auto h = image_header(b);
  if (!h) return;  // a format read only by OpenCV: its own limit (OPENCV_IO_MAX_IMAGE_PIXELS, 2^30) applies
  const double px = static_cast<double>(h->width) * static_cast<double>(h->height);
  if (px > static_cast<double>(limit))
    throw DecodeError(fmt::format("{}: {} {}×{} = {} pixels, over the limit of {} (XFER_MAX_IMAGE_PIXELS); not decoded",
                                  path, h->format, h->width, h->height, megapixels(px),
                                  megapixels(static_cast<double>(limit))));
}

// JPEG through libjpeg(-turbo) directly: the decoder Pillow uses, with Pillow's settings (accurate integer IDCT,
// fancy upsampling), straight into RGB (or BGR for the quirk) — 40 % faster than cv::imdecode, same pixels.
struct JpegError {
  jpeg_error_mgr mgr;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
  bool data_ended = false;  // the scan's data ran out (or hit a marker) before the frame's last row
};

bool decode_jpeg(const std::string& path, const std::vector<uint8_t>& buf, bool bgr, Image* out) {
  jpeg_decompress_struct c;
  JpegError err;
  c.err = jpeg_std_error(&err.mgr);
  err.mgr.error_exit = [](j_common_ptr ci) {
    auto* e = reinterpret_cast<JpegError*>(ci->err);
    (*ci->err->format_message)(ci, e->message);
    std::longjmp(e->jump, 1);
  };
  err.mgr.output_message = [](j_common_ptr) {};  // warnings (recoverable corruption) are not fatal, as in Pillow
  // ... except data that ends before the frame does: a frame header claiming 8000×8000 over 16×16 worth of data would
  // decode to 190 MB of grey filler (Pillow: "image file is truncated").
  err.mgr.emit_message = [](j_common_ptr ci, int level) {
    if (level < 0 && (ci->err->msg_code == JWRN_JPEG_EOF || ci->err->msg_code == JWRN_HIT_MARKER))
      reinterpret_cast<JpegError*>(ci->err)->data_ended = true;
  };
  jpeg_create_decompress(&c);
  if (setjmp(err.jump)) {
    jpeg_destroy_decompress(&c);
    throw DecodeError(path + ": corrupt JPEG (" + std::string(err.message) + ")");
  }
  jpeg_mem_src(&c, buf.data(), static_cast<unsigned long>(buf.size()));
  jpeg_read_header(&c, TRUE);
  if (c.jpeg_color_space != JCS_YCbCr && c.jpeg_color_space != JCS_GRAYSCALE && c.jpeg_color_space != JCS_RGB) {
    jpeg_destroy_decompress(&c);
    return false;  // CMYK/YCCK: leave to OpenCV
  }
  const bool grey = c.jpeg_color_space == JCS_GRAYSCALE;
#ifdef JCS_EXTENSIONS
  c.out_color_space = grey ? JCS_GRAYSCALE : (bgr ? JCS_EXT_BGR : JCS_RGB);
#else
  c.out_color_space = grey ? JCS_GRAYSCALE : JCS_RGB;
#endif
  jpeg_start_decompress(&c);
  out->rows = static_cast<int>(c.output_height);
  out->cols = static_cast<int>(c.output_width);
  out->channels = c.output_components;
  // Rows are added as they decode (the memory is reserved, not touched): a file whose data ends early is refused
  // having used only the memory of the rows it holds.
  const size_t row_bytes = static_cast<size_t>(out->cols) * out->channels;
  out->px.clear();
  out->px.reserve(row_bytes * out->rows);
  while (c.output_scanline < c.output_height) {
    out->px.resize(out->px.size() + row_bytes);
    JSAMPROW row = out->row(static_cast<int>(c.output_scanline));
    jpeg_read_scanlines(&c, &row, 1);
    if (err.data_ended) {
      const auto rows = c.output_scanline;
      jpeg_destroy_decompress(&c);
      throw DecodeError(fmt::format("{}: truncated JPEG: its frame header says {}×{}, but its data ends near row {}",
                                    path, out->cols, out->rows, rows));
    }
  }
  jpeg_finish_decompress(&c);
  jpeg_destroy_decompress(&c);
#ifndef JCS_EXTENSIONS
  if (bgr && out->channels == 3)
    for (size_t i = 0; i < out->px.size(); i += 3) std::swap(out->px[i], out->px[i + 2]);
#endif
  return true;
}

const std::vector<uint8_t>& read_checked(const std::string& path) {
  thread_local std::vector<uint8_t> buf;
  if (!read_bytes(path, buf)) throw DecodeError(path + ": cannot read the file");
  if (buf.empty()) throw DecodeError(path + ": empty file");
  check_complete(path, buf);
  check_pixel_limit(path, buf);
  return buf;
}

cv::Mat decode_mat(const std::string& path, const std::vector<uint8_t>& buf) {
  quiet_opencv();
  cv::Mat m;
  try {
    m = cv::imdecode(cv::_InputArray(buf.data(), static_cast<int>(buf.size())), cv::IMREAD_UNCHANGED);
  } catch (const cv::Exception& e) {
    throw DecodeError(path + ": cannot decode (" + e.err + ")");
  }
  if (m.empty()) throw DecodeError(path + ": not a decodable image (corrupt, or a format OpenCV cannot read)");
  if (m.depth() == CV_16U) {
    cv::Mat e;
    m.convertTo(e, CV_8U, 1.0 / 257.0);  // rounds to nearest
    m = e;
  } else if (m.depth() != CV_8U) {
    throw DecodeError(path + ": unsupported pixel depth (8- and 16-bit images are supported)");
  }
  return m;
}

Image to_image(const cv::Mat& m) {
  Image img;
  img.rows = m.rows;
  img.cols = m.cols;
  img.channels = m.channels();
  img.px.resize(static_cast<size_t>(m.rows) * m.cols * m.channels());
  for (int y = 0; y < m.rows; ++y)
    std::memcpy(img.row(y), m.ptr(y), static_cast<size_t>(m.cols) * m.channels());
  return img;
}

// Pillow's resampling coefficients (Resample.c, precompute_coeffs + normalize_coeffs_8bpc) for BILINEAR.
constexpr int kPrecisionBits = 32 - 8 - 2;

struct Coeffs {
  int ksize = 0;
  std::vector<int> xmin, xcount;
  std::vector<int32_t> k;
};

Coeffs precompute(int in_size, int out_size) {
  Coeffs c;
  const double scale = static_cast<double>(static_cast<float>(in_size)) / out_size;
  const double filterscale = scale < 1.0 ? 1.0 : scale;
  const double support = 1.0 * filterscale;
  c.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  c.xmin.resize(out_size);
  c.xcount.resize(out_size);
  c.k.assign(static_cast<size_t>(out_size) * c.ksize, 0);
  std::vector<double> w(c.ksize);
  for (int xx = 0; xx < out_size; ++xx) {
    const double center = (xx + 0.5) * scale;
    const double ss = 1.0 / filterscale;
    int xmin = static_cast<int>(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    int xmax = static_cast<int>(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    double ww = 0.0;
    for (int x = 0; x < xmax; ++x) {
      double t = (x + xmin - center + 0.5) * ss;
      if (t < 0.0) t = -t;
      w[x] = t < 1.0 ? 1.0 - t : 0.0;
      ww += w[x];
    }
    for (int x = 0; x < xmax; ++x) {
      const double v = ww != 0.0 ? w[x] / ww : w[x];
      c.k[static_cast<size_t>(xx) * c.ksize + x] =
          static_cast<int32_t>(v < 0 ? -0.5 + v * (1 << kPrecisionBits) : 0.5 + v * (1 << kPrecisionBits));
    }
    c.xmin[xx] = xmin;
    c.xcount[xx] = xmax;
  }
  return c;
}

inline uint8_t clip8(int32_t v) {
  v >>= kPrecisionBits;
  return static_cast<uint8_t>(v < 0 ? 0 : (v > 255 ? 255 : v));
}

template <int C>
void horizontal(const uint8_t* src, size_t src_stride, int rows, const Coeffs& c, int x0, int w, uint8_t* dst,
                size_t dst_stride) {
  constexpr int32_t kHalf = 1 << (kPrecisionBits - 1);
  for (int y = 0; y < rows; ++y) {
    const uint8_t* __restrict__ in = src + y * src_stride;
    uint8_t* __restrict__ out = dst + y * dst_stride;
    for (int xx = x0; xx < x0 + w; ++xx) {
      const int32_t* __restrict__ k = &c.k[static_cast<size_t>(xx) * c.ksize];
      const uint8_t* __restrict__ p = in + static_cast<size_t>(c.xmin[xx]) * C;
      const int n = c.xcount[xx];
      if constexpr (C == 3) {
        int32_t a0 = kHalf, a1 = kHalf, a2 = kHalf;
        for (int x = 0; x < n; ++x) {
          const int32_t kx = k[x];
          a0 += p[3 * x] * kx;
          a1 += p[3 * x + 1] * kx;
          a2 += p[3 * x + 2] * kx;
        }
        out[(xx - x0) * 3] = clip8(a0);
        out[(xx - x0) * 3 + 1] = clip8(a1);
        out[(xx - x0) * 3 + 2] = clip8(a2);
      } else {
        int32_t a0 = kHalf;
        for (int x = 0; x < n; ++x) a0 += p[x] * k[x];
        out[xx - x0] = clip8(a0);
      }
    }
  }
}

template <int C>
void vertical(const uint8_t* src, size_t src_stride, int row_offset, int cols, const Coeffs& c, int y0, int h,
              uint8_t* dst, size_t dst_stride) {
  thread_local std::vector<int32_t> acc;
  acc.resize(static_cast<size_t>(cols) * C);
  for (int yy = y0; yy < y0 + h; ++yy) {
    const int32_t* k = &c.k[static_cast<size_t>(yy) * c.ksize];
    std::fill(acc.begin(), acc.end(), 1 << (kPrecisionBits - 1));
    for (int y = 0; y < c.xcount[yy]; ++y) {
      const uint8_t* in = src + static_cast<size_t>(c.xmin[yy] + y - row_offset) * src_stride;
      const int32_t ky = k[y];
      for (int i = 0; i < cols * C; ++i) acc[i] += in[i] * ky;
    }
    uint8_t* out = dst + static_cast<size_t>(yy - y0) * dst_stride;
    for (int i = 0; i < cols * C; ++i) out[i] = clip8(acc[i]);
  }
}

// Resizes the view (rows × cols × C at src with src_stride) to out_cols × out_rows, computing the window only.
Image resize_view(const uint8_t* src, size_t src_stride, int rows, int cols, int channels, int out_cols, int out_rows,
                  int x0, int y0, int w, int h) {
  const Coeffs ch = precompute(cols, out_cols), cv = precompute(rows, out_rows);
  // Source rows the vertical pass reads for output rows [y0, y0 + h).
  const int first = cv.xmin[y0];
  int last = first;
  for (int yy = y0; yy < y0 + h; ++yy) last = std::max(last, cv.xmin[yy] + cv.xcount[yy]);
  thread_local std::vector<uint8_t> tmp;
  tmp.resize(static_cast<size_t>(last - first) * w * channels);
  const size_t tmp_stride = static_cast<size_t>(w) * channels;
  Image out;
  out.rows = h;
  out.cols = w;
  out.channels = channels;
  out.px.resize(static_cast<size_t>(w) * h * channels);
  const uint8_t* rows_in = src + static_cast<size_t>(first) * src_stride;
  if (channels == 3) {
    horizontal<3>(rows_in, src_stride, last - first, ch, x0, w, tmp.data(), tmp_stride);
    vertical<3>(tmp.data(), tmp_stride, first, w, cv, y0, h, out.px.data(), tmp_stride);
  } else if (channels == 1) {
    horizontal<1>(rows_in, src_stride, last - first, ch, x0, w, tmp.data(), tmp_stride);
    vertical<1>(tmp.data(), tmp_stride, first, w, cv, y0, h, out.px.data(), tmp_stride);
  } else {
    throw std::invalid_argument("resize: 1 or 3 channels expected");
  }
  return out;
}

}  // namespace

std::optional<ImageHeader> image_header(const std::vector<uint8_t>& b) {
  static const uint8_t kPng[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  if (b.size() >= 24 && std::equal(kPng, kPng + 8, b.begin()) && std::equal(b.begin() + 12, b.begin() + 16, "IHDR"))
    return ImageHeader{"PNG", be32(b, 16), be32(b, 20)};
  if (b.size() >= 4 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF) return jpeg_header(b);
  if (b.size() >= 26 && b[0] == 'B' && b[1] == 'M') {
    const int32_t w = static_cast<int32_t>(le32(b, 18)), h = static_cast<int32_t>(le32(b, 22));
    const uint32_t header = le32(b, 14);
    if (header == 12) return ImageHeader{"BMP", le16(b, 18), le16(b, 20)};  // OS/2 BITMAPCOREHEADER
    return ImageHeader{"BMP", static_cast<uint64_t>(std::llabs(w)), static_cast<uint64_t>(std::llabs(h))};
  }
  if (b.size() >= 8 && ((b[0] == 'I' && b[1] == 'I' && b[2] == 42 && b[3] == 0) ||
                        (b[0] == 'M' && b[1] == 'M' && b[2] == 0 && b[3] == 42)))
    return tiff_header(b);
  if (b.size() >= 16 && std::equal(b.begin(), b.begin() + 4, "RIFF") && std::equal(b.begin() + 8, b.begin() + 12, "WEBP"))
    return webp_header(b);
  if (b.size() >= 3 && b[0] == 'P' && b[1] >= '1' && b[1] <= '6' && std::isspace(b[2])) return pnm_header(b);
  return std::nullopt;
}

Image decode_file(const std::string& path, bool bgr_quirk) {
  const auto& buf = read_checked(path);
  if (buf.size() >= 3 && buf[0] == 0xFF && buf[1] == 0xD8 && buf[2] == 0xFF) {
    Image img;
    if (decode_jpeg(path, buf, bgr_quirk, &img)) return img;
  }
  cv::Mat m = decode_mat(path, buf);
  cv::Mat rgb;
  switch (m.channels()) {
    case 1: rgb = m; break;
    case 3:
      if (bgr_quirk) rgb = m;
      else cv::cvtColor(m, rgb, cv::COLOR_BGR2RGB);
      break;
    case 4:
      cv::cvtColor(m, rgb, bgr_quirk ? cv::COLOR_BGRA2BGR : cv::COLOR_BGRA2RGB);
      break;
    case 2: {  // grey + alpha
      std::vector<cv::Mat> planes;
      cv::split(m, planes);
      rgb = planes[0];
      break;
    }
    default: throw DecodeError(path + ": unsupported channel count " + std::to_string(m.channels()));
  }
  return to_image(rgb);
}

Image decode(const Dataset& d, int64_t index, bool bgr_quirk) {
  const Sample& s = d.samples[static_cast<size_t>(index)];
  if (s.memory_index >= 0) {
    const auto& m = *d.memory;
    Image img;
    img.rows = m.rows;
    img.cols = m.cols;
    img.channels = 1;
    img.px.assign(m.image(s.memory_index), m.image(s.memory_index) + static_cast<size_t>(m.rows) * m.cols);
    return img;
  }
  if (s.paths.size() == 1) return decode_file(s.paths[0], bgr_quirk);
  if (s.paths.size() < 3) throw DecodeError(s.id + ": expected 1 image or 3-4 planes");
  // Planes (HPA red, green, blue[, yellow]): R, G, B; the yellow plane is dropped.
  std::array<Image, 3> planes;
  for (int p = 0; p < 3; ++p) {
    planes[p] = decode_file(s.paths[p], false);
    if (planes[p].channels != 1) {
      cv::Mat m(planes[p].rows, planes[p].cols, CV_8UC(planes[p].channels), planes[p].px.data()), g;
      cv::cvtColor(m, g, planes[p].channels == 3 ? cv::COLOR_RGB2GRAY : cv::COLOR_RGBA2GRAY);
      planes[p] = to_image(g);
    }
    if (planes[p].rows != planes[0].rows || planes[p].cols != planes[0].cols)
      throw DecodeError(s.paths[p] + ": plane size differs from " + s.paths[0]);
  }
  Image img;
  img.rows = planes[0].rows;
  img.cols = planes[0].cols;
  img.channels = 3;
  img.px.resize(static_cast<size_t>(img.rows) * img.cols * 3);
  const int order[3] = {bgr_quirk ? 2 : 0, 1, bgr_quirk ? 0 : 2};
  for (size_t i = 0; i < static_cast<size_t>(img.rows) * img.cols; ++i)
    for (int c = 0; c < 3; ++c) img.px[i * 3 + c] = planes[order[c]].px[i];
  return img;
}

Image resize_pil_bilinear(const Image& src, int out_cols, int out_rows, int x0, int y0, int w, int h) {
  if (w <= 0 || h <= 0 || x0 < 0 || y0 < 0 || x0 + w > out_cols || y0 + h > out_rows)
    throw std::invalid_argument("resize: window outside the output");
  return resize_view(src.px.data(), static_cast<size_t>(src.cols) * src.channels, src.rows, src.cols, src.channels,
                     out_cols, out_rows, x0, y0, w, h);
}

Image resize_pil_bilinear(const Image& src, int out_cols, int out_rows) {
  return resize_pil_bilinear(src, out_cols, out_rows, 0, 0, out_cols, out_rows);
}

Image crop(const Image& src, int top, int left, int height, int width) {
  Image out;
  out.rows = height;
  out.cols = width;
  out.channels = src.channels;
  out.px.resize(static_cast<size_t>(height) * width * src.channels);
  for (int y = 0; y < height; ++y)
    std::memcpy(out.row(y), src.row(top + y) + static_cast<size_t>(left) * src.channels,
                static_cast<size_t>(width) * src.channels);
  return out;
}

// Used by the train transform: resize a crop box of `src` (crop first, then resize, as F.resized_crop).
Image resize_box_pil_bilinear(const Image& src, const CropBox& b, int size) {
  const uint8_t* origin = src.row(b.top) + static_cast<size_t>(b.left) * src.channels;
  return resize_view(origin, static_cast<size_t>(src.cols) * src.channels, b.height, b.width, src.channels, size,
                     size, 0, 0, size, size);
}

}  // namespace xfer::data
