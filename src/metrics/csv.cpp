#include "xfer/metrics/csv.hpp"

#include <charconv>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

namespace xfer::metrics {

namespace {

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error::input(path + ": cannot open");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Calls row(fields) for every non-empty line; fields are views into the text.
template <class Row>
void for_each_row(const std::string& path, const std::string& text, Row row) {
  std::vector<std::string_view> fields;
  size_t pos = 0;
  int64_t line = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string_view l(text.data() + pos, end - pos);
    pos = end + 1;
    ++line;
    if (!l.empty() && l.back() == '\r') l.remove_suffix(1);
    if (l.empty()) continue;
    fields.clear();
    size_t f = 0;
    while (true) {
      size_t c = l.find(',', f);
      std::string_view cell = l.substr(f, c == std::string_view::npos ? std::string_view::npos : c - f);
      while (!cell.empty() && cell.front() == ' ') cell.remove_prefix(1);
      while (!cell.empty() && cell.back() == ' ') cell.remove_suffix(1);
      fields.push_back(cell);
      if (c == std::string_view::npos) break;
      f = c + 1;
    }
    row(line, fields);
  }
  (void)path;
}

template <class T>
T parse_number(const std::string& path, int64_t line, size_t col, std::string_view cell, const char* what) {
  T v{};
  auto r = std::from_chars(cell.data(), cell.data() + cell.size(), v);
  if (r.ec != std::errc() || r.ptr != cell.data() + cell.size())
    throw Error::input(fmt::format("{}:{}: column {}: expected {}, got '{}'", path, line, col + 1, what, cell));
  return v;
}

}  // namespace

Labels read_labels_csv(const std::string& path) {
  const std::string text = slurp(path);
  Labels y;
  size_t width = 0;
  for_each_row(path, text, [&](int64_t line, const std::vector<std::string_view>& f) {
    if (width == 0) {
      width = f.size();
      y.multilabel = width > 1;
      y.k = y.multilabel ? static_cast<int>(width) : 0;
    } else if (f.size() != width) {
      throw Error::input(fmt::format("{}:{}: expected {} column{} like the first row, got {}", path, line, width,
                                     width == 1 ? "" : "s", f.size()));
    }
    if (!y.multilabel) {
      const int v = parse_number<int>(path, line, 0, f[0], "an integer class ≥ 0");
      if (v < 0) throw Error::input(fmt::format("{}:{}: class {} is negative", path, line, v));
      y.single.push_back(v);
      y.k = std::max(y.k, v + 1);
    } else {
      for (size_t c = 0; c < f.size(); ++c) {
        const int v = parse_number<int>(path, line, c, f[c], "0 or 1");
        if (v != 0 && v != 1)
          throw Error::input(fmt::format("{}:{}: column {}: multi-label values are 0 or 1, got {}", path, line, c + 1, v));
        y.multi.push_back(static_cast<uint8_t>(v));
      }
    }
    ++y.n;
  });
  if (y.n == 0) throw Error::input(path + ": no rows");
  return y;
}

Scores read_scores_csv(const std::string& path) {
  const std::string text = slurp(path);
  Scores s;
  for_each_row(path, text, [&](int64_t line, const std::vector<std::string_view>& f) {
    if (s.k == 0) s.k = static_cast<int>(f.size());
    else if (static_cast<int>(f.size()) != s.k)
      throw Error::input(fmt::format("{}:{}: expected {} columns like the first row, got {}", path, line, s.k, f.size()));
    for (size_t c = 0; c < f.size(); ++c) {
      const double v = parse_number<double>(path, line, c, f[c], "a number");
      if (std::isnan(v)) throw Error::input(fmt::format("{}:{}: column {}: NaN score", path, line, c + 1));
      s.values.push_back(v);
    }
    ++s.n;
  });
  if (s.n == 0) throw Error::input(path + ": no rows");
  return s;
}

}  // namespace xfer::metrics
