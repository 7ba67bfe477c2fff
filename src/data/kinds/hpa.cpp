// data/kinds/hpa: the Human Protein Atlas Kaggle images and the paper's fixed split file (train, val, test_val).
#include <fmt/format.h>

#include "kind_opener.hpp"
#include "../csv_table.hpp"

namespace xfer::data {

namespace {

const std::vector<std::string>& hpa_names() {
  static const std::vector<std::string> k = {
      "Nucleoplasm", "Nuclear membrane", "Nucleoli", "Nucleoli fibrillar center", "Nuclear speckles",
      "Nuclear bodies", "Endoplasmic reticulum", "Golgi apparatus", "Peroxisomes", "Endosomes", "Lysosomes",
      "Intermediate filaments", "Actin filaments", "Focal adhesion sites", "Microtubules", "Microtubule ends",
      "Cytokinetic bridge", "Mitotic spindle", "Microtubule organizing center", "Centrosome", "Lipid droplets",
      "Plasma membrane", "Cell junctions", "Mitochondria", "Aggresome", "Cytosol", "Cytoplasmic bodies",
      "Rods & rings"};
  return k;
}

// Space- or semicolon-separated class numbers ("0 25"); false on anything else.
bool parse_label_list(const std::string& text, int k, std::vector<uint16_t>* out, std::string* bad) {
  out->clear();
  std::string tok;
  auto flush = [&]() {
    if (tok.empty()) return true;
    bool ok = false;
    const int v = parse_int(tok, &ok);
    if (!ok || v < 0 || v >= k) {
      *bad = tok;
      return false;
    }
    if (std::find(out->begin(), out->end(), v) == out->end()) out->push_back(static_cast<uint16_t>(v));
    tok.clear();
    return true;
  };
  for (char c : text) {
    if (c == ' ' || c == ';' || c == '|') {
      if (!flush()) return false;
    } else {
      tok += c;
    }
  }
  if (!flush()) return false;
  std::sort(out->begin(), out->end());
  return true;
}

Dataset open_hpa(Builder& b) {
  const fs::path root = b.d().root;
  const std::string split_file = b.settings().split_file;
  fs::path split_csv;
  for (const fs::path& c : {root / split_file, root / "splits" / "hpa" / split_file, root / "splits" / split_file})
    if (fs::is_regular_file(c)) {
      split_csv = c;
      break;
    }
  if (split_csv.empty())
    layout_error("hpa", root.string(), "the split file " + split_file + " (from the paper's repository) under it");
  // Images: four greyscale planes per Id (Kaggle), or one RGBY PNG per Id (the paper's rgby/train/).
  fs::path rgby_dir;
  for (const fs::path& c : {root / "rgby" / "train", root / "train"})
    if (fs::is_directory(c)) {
      rgby_dir = c;
      break;
    }
  if (rgby_dir.empty()) layout_error("hpa", root.string(), "train/<Id>_{red,green,blue,yellow}.png or rgby/train/<Id>.png");
  const auto t = CsvTable::read(split_csv.string());
  const int ic = t.column("Id"), tc = t.column("Target"), sc = t.column("Split");
  b.d().multilabel = true;
  b.d().class_names = hpa_names();
  bool four_files = false;
  if (!t.rows.empty() && t.rows[0].size() > static_cast<size_t>(ic))
    four_files = fs::is_regular_file(rgby_dir / (t.rows[0][ic] + "_red.png"));
  for (size_t r = 0; r < t.rows.size(); ++r) {
    const auto& row = t.rows[r];
    Sample s;
    if (row.size() != t.header.size()) {
      s.id = row.empty() ? "" : row[0];
      b.reject(b.add(std::move(s), Split::unused), t.where(r), fmt::format("expected {} fields, got {}", t.header.size(), row.size()));
      continue;
    }
    s.id = row[ic];
    if (four_files)
      for (const char* plane : {"red", "green", "blue", "yellow"})
        s.paths.push_back((rgby_dir / (s.id + "_" + plane + ".png")).string());
    else
      s.paths = {(rgby_dir / (s.id + ".png")).string()};
    std::string bad;
    const bool labels_ok = parse_label_list(row[tc], 28, &s.labels, &bad);
    const std::string split = row[sc];
    const Split native = split == "train" ? Split::train : split == "val" ? Split::val
                         : split == "test_val" ? Split::test : Split::unused;
    const size_t i = b.add(std::move(s), native == Split::unused ? Split::train : native);
    if (!labels_ok) b.reject(i, t.where(r), "Target label '" + bad + "' is not a class 0..27");
    else if (native == Split::unused) b.reject(i, t.where(r), "Split '" + split + "' is not train, val or test_val");
  }
  std::set<int64_t> none;
  return b.finish(&none);
}

}  // namespace

const KindOpener& hpa_kind() {
  static const KindOpener k{"hpa", open_hpa, nullptr};
  return k;
}

}  // namespace xfer::data
