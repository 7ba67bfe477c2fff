// data/kinds/idx: MNIST-format IDX files (train, optional t10k), gzipped or not, held in memory.
#include <algorithm>
#include <cstdlib>
#include <memory>

#include <zlib.h>

#include "kind_opener.hpp"

namespace xfer::data {

namespace {

// IDX (MNIST / Fashion-MNIST format), gzipped or not: zlib reads both.
std::vector<uint8_t> read_gz_or_plain(const std::string& path) {
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) throw Error::input(path + ": cannot open");
  std::vector<uint8_t> out;
  uint8_t buf[1 << 16];
  int got;
  while ((got = gzread(f, buf, sizeof buf)) > 0) out.insert(out.end(), buf, buf + got);
  int err = 0;
  const char* msg = gzerror(f, &err);
  gzclose(f);
  if (got < 0 || (err != Z_OK && err != Z_STREAM_END))
    throw Error::input(path + ": read error (" + std::string(msg ? msg : "zlib") + "): truncated or corrupt");
  return out;
}

uint32_t be32(const std::vector<uint8_t>& b, size_t at) {
  return (uint32_t(b[at]) << 24) | (uint32_t(b[at + 1]) << 16) | (uint32_t(b[at + 2]) << 8) | uint32_t(b[at + 3]);
}

std::string find_idx(const fs::path& root, const std::string& stem) {
  for (const std::string& name : std::vector<std::string>{stem + ".gz", stem})
    if (fs::is_regular_file(root / name)) return (root / name).string();
  // MNIST's other spelling: train-images.idx3-ubyte
  std::string dotted = stem;
  if (auto p = dotted.find("-idx"); p != std::string::npos) dotted[p] = '.';
  for (const std::string& name : std::vector<std::string>{dotted + ".gz", dotted})
    if (fs::is_regular_file(root / name)) return (root / name).string();
  return "";
}

// `classes = "5,6,7,8,9"`: the labels kept, in the order they are relabelled 0..k-1 (a held-out half of the classes
// as a task of its own).
std::vector<int> kept_classes(Builder& b) {
  std::vector<int> out;
  const std::string& text = b.settings().classes;
  if (text.empty()) return out;
  size_t at = 0;
  while (at <= text.size()) {
    const size_t comma = std::min(text.find(',', at), text.size());
    const std::string item = text.substr(at, comma - at);
    bool ok = !item.empty() && item.find_first_not_of("0123456789 ") == std::string::npos;
    const int v = ok ? std::atoi(item.c_str()) : -1;
    ok = ok && v >= 0 && v <= 255 && std::find(out.begin(), out.end(), v) == out.end();
    if (!ok)
      throw Error::input("dataset \"" + b.d().name + "\": classes = \"" + text +
                         "\": expected distinct labels 0–255 separated by commas, e.g. \"0,1,2,3,4\"");
    out.push_back(v);
    at = comma + 1;
  }
  return out;
}

Dataset open_idx(Builder& b) {
  const fs::path root = b.d().root;
  const std::vector<int> keep = kept_classes(b);
  auto memory = std::make_shared<MemoryImages>();
  int max_label = -1;
  struct Part {
    const char* images;
    const char* labels;
    const char* prefix;
    Split split;
  };
  const Part parts[] = {{"train-images-idx3-ubyte", "train-labels-idx1-ubyte", "train", Split::train},
                        {"t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", "t10k", Split::test}};
  std::vector<std::pair<Sample, Split>> pending;
  for (const auto& part : parts) {
    const std::string ip = find_idx(root, part.images), lp = find_idx(root, part.labels);
    if (ip.empty() || lp.empty()) {
      if (part.split == Split::test) continue;  // a test file is optional: then the paper's draw holds out part of train
      layout_error("idx", root.string(), std::string(part.images) + "(.gz) and " + part.labels + "(.gz) under it");
    }
    const auto im = read_gz_or_plain(ip), lb = read_gz_or_plain(lp);
    if (im.size() < 16 || be32(im, 0) != 0x00000803)
      throw Error::input(ip + ": not an IDX image file (magic 0x00000803, 3 dimensions, unsigned bytes expected)");
    if (lb.size() < 8 || be32(lb, 0) != 0x00000801)
      throw Error::input(lp + ": not an IDX label file (magic 0x00000801 expected)");
    const uint32_t n = be32(im, 4), rows = be32(im, 8), cols = be32(im, 12), nl = be32(lb, 4);
    if (n != nl) throw Error::input(ip + ": " + std::to_string(n) + " images but " + lp + " has " + std::to_string(nl) + " labels");
    if (im.size() < 16 + size_t(n) * rows * cols)
      throw Error::input(ip + ": truncated: header says " + std::to_string(n) + " images of " + std::to_string(rows) +
                         "×" + std::to_string(cols));
    if (lb.size() < 8 + size_t(n)) throw Error::input(lp + ": truncated: header says " + std::to_string(n) + " labels");
    if (memory->n > 0 && (memory->rows != static_cast<int>(rows) || memory->cols != static_cast<int>(cols)))
      throw Error::input(ip + ": images are " + std::to_string(rows) + "×" + std::to_string(cols) + ", the train file's are " +
                         std::to_string(memory->rows) + "×" + std::to_string(memory->cols));
    memory->rows = static_cast<int>(rows);
    memory->cols = static_cast<int>(cols);
    const int64_t first = memory->n;
    memory->pixels.insert(memory->pixels.end(), im.begin() + 16, im.begin() + 16 + int64_t(n) * rows * cols);
    memory->n += n;
    for (uint32_t i = 0; i < n; ++i) {
      Sample s;
      s.id = std::string(part.prefix) + "/" + std::to_string(i);
      s.memory_index = first + i;
      s.label = lb[8 + i];
      if (!keep.empty()) {
        const auto it = std::find(keep.begin(), keep.end(), s.label);
        if (it == keep.end()) continue;
        s.label = static_cast<int>(it - keep.begin());
      }
      max_label = std::max(max_label, s.label);
      pending.emplace_back(std::move(s), part.split);
    }
  }
  const bool has_test = std::any_of(pending.begin(), pending.end(), [](const auto& p) { return p.second == Split::test; });
  if (!keep.empty() && max_label + 1 < static_cast<int>(keep.size()))
    throw Error::input("dataset \"" + b.d().name + "\": classes = \"" + b.settings().classes + "\": label " +
                       std::to_string(keep[max_label + 1]) + " does not occur in " + root.string());
  for (int c = 0; c <= max_label; ++c) b.d().class_names.push_back(std::to_string(keep.empty() ? c : keep[c]));
  for (auto& [s, split] : pending) b.add(std::move(s), has_test ? split : Split::unused);
  b.d().memory = memory;
  if (has_test) {
    std::set<int64_t> none;
    return b.finish(&none);
  }
  return b.finish();
}

}  // namespace

const KindOpener& idx_kind() {
  static const KindOpener k{"idx", open_idx, nullptr};
  return k;
}

}  // namespace xfer::data
