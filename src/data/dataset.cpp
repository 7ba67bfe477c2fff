// The dataset adapters: each reads one native layout into samples in file order, then the shared split logic
// applies the paper's draws, the holdout carve and the subsample limits.
#include "xfer/data/dataset.hpp"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <set>
#include <unordered_map>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <zlib.h>

#include "csv_table.hpp"
#include "xfer/core/digest.hpp"
#include "xfer/core/error.hpp"
#include "xfer/data/numpy_random.hpp"
#include "xfer/spec/spec.hpp"

namespace fs = std::filesystem;

namespace xfer::data {

const char* split_name(Split s) {
  switch (s) {
    case Split::train: return "train";
    case Split::val: return "val";
    case Split::test: return "test";
    default: return "unused";
  }
}

std::vector<int64_t> Dataset::indices(Split s) const {
  const Split want = (s == Split::val && validation == "paper") ? Split::test : s;
  std::vector<int64_t> out;
  for (size_t i = 0; i < split.size(); ++i)
    if (split[i] == want) out.push_back(static_cast<int64_t>(i));
  return out;
}

std::vector<int64_t> Dataset::class_counts(Split s) const {
  std::vector<int64_t> c(class_names.size(), 0);
  for (int64_t i : indices(s)) {
    const auto& x = samples[static_cast<size_t>(i)];
    if (multilabel) for (auto l : x.labels) c[l]++;
    else c[static_cast<size_t>(x.label)]++;
  }
  return c;
}

namespace {

bool is_image_file(const fs::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  static const std::set<std::string> kExt = {".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp"};
  return kExt.count(ext) > 0;
}

// Collects samples in file order plus what the layout says about splits; problems as they are found.
class Builder {
 public:
  Builder(const std::string& name, const std::string& kind, const std::string& root, const SplitSettings& s)
      : s_(s) {
    d_.name = name;
    d_.kind = kind;
    d_.root = root;
  }

  Dataset& d() { return d_; }
  const SplitSettings& settings() const { return s_; }

  // A sample; `native` is its split if the layout fixes one, else Split::unused (to be drawn).
  size_t add(Sample sample, Split native = Split::unused) {
    d_.samples.push_back(std::move(sample));
    native_.push_back(native);
    bad_.push_back(false);
    excluded_.push_back(false);
    return d_.samples.size() - 1;
  }
  // An unusable sample: still takes part in the paper's draws (as in the released code), then is dropped.
  void reject(size_t i, const std::string& where, const std::string& reason) {
    bad_[i] = true;
    problem(d_.samples[i].id, d_.samples[i].paths.empty() ? "" : d_.samples[i].paths[0], where, reason);
  }
  void problem(const std::string& id, const std::string& path, const std::string& where, const std::string& reason) {
    if (s_.strict) throw Error::input(where + ": " + reason + (id.empty() ? "" : " (sample " + id + ")"));
    d_.problems.push_back({id, path, reason});
  }
  // Not part of any split, by the dataset's own rules (Melanoma rows outside every fold); not a problem.
  void exclude(size_t i) { excluded_[i] = true; }
  bool bad(size_t i) const { return bad_[i]; }
  Split native(size_t i) const { return native_[i]; }

  // Labels that are in range; images that exist; ids seen once.
  void check_samples() {
    std::unordered_map<std::string, size_t> seen;
    for (size_t i = 0; i < d_.samples.size(); ++i) {
      if (bad_[i]) continue;
      auto& x = d_.samples[i];
      if (auto [it, fresh] = seen.emplace(x.id, i); !fresh) {
        reject(i, d_.root, "duplicate sample id \"" + x.id + "\" (first seen as sample " + std::to_string(it->second) + ")");
        continue;
      }
      for (const auto& p : x.paths) {
        std::error_code ec;
        if (!fs::is_regular_file(p, ec)) {
          reject(i, p, "image file is missing");
          break;
        }
      }
    }
    // Empty classes: a class with no usable sample at all.
    std::vector<int64_t> count(d_.class_names.size(), 0);
    for (size_t i = 0; i < d_.samples.size(); ++i) {
      if (bad_[i]) continue;
      if (d_.multilabel) for (auto l : d_.samples[i].labels) count[l]++;
      else if (d_.samples[i].label >= 0) count[static_cast<size_t>(d_.samples[i].label)]++;
    }
    for (size_t c = 0; c < count.size(); ++c)
      if (count[c] == 0 && !d_.multilabel)
        problem("", d_.root, d_.root, "class " + std::to_string(c) + " (\"" + d_.class_names[c] + "\") has no samples");
  }

  // Per class (0..K-1), in file order, the samples with an in-range label — bad ones included, as the released
  // code sees every row of its CSV.
  std::vector<std::vector<int64_t>> by_class(const std::vector<int64_t>& pool) const {
    std::vector<std::vector<int64_t>> out(d_.class_names.size());
    for (int64_t i : pool) {
      const auto& x = d_.samples[static_cast<size_t>(i)];
      const int c = d_.multilabel ? (x.labels.empty() ? -1 : x.labels.front()) : x.label;
      if (c >= 0 && c < static_cast<int>(out.size())) out[static_cast<size_t>(c)].push_back(i);
    }
    return out;
  }

  // The paper's held-out draw: np.random.seed(seed); per class, choice(class rows, int(f · n_c), replace=False).
  std::set<int64_t> paper_heldout(const std::vector<int64_t>& pool, double fraction, int64_t seed) const {
    LegacyRandomState rs(static_cast<uint32_t>(seed));
    std::set<int64_t> held;
    for (const auto& rows : by_class(pool)) {
      const auto k = static_cast<int64_t>(fraction * static_cast<double>(rows.size()));
      for (int64_t i : rs.choice_without_replacement(rows, k)) held.insert(i);
    }
    return held;
  }

  // Stratified subsample of `pool` to `limit` (largest-remainder quotas per class), drawn like the paper's draws.
  std::set<int64_t> subsample(const std::vector<int64_t>& pool, int64_t limit, uint32_t seed) const {
    std::set<int64_t> keep;
    if (limit <= 0 || limit >= static_cast<int64_t>(pool.size())) {
      keep.insert(pool.begin(), pool.end());
      return keep;
    }
    auto classes = by_class(pool);
    std::vector<int64_t> unlabeled;  // multi-label rows without a positive class
    if (d_.multilabel)
      for (int64_t i : pool)
        if (d_.samples[static_cast<size_t>(i)].labels.empty()) unlabeled.push_back(i);
    classes.push_back(unlabeled);
    const double n = static_cast<double>(pool.size());
    std::vector<int64_t> quota(classes.size());
    std::vector<std::pair<double, size_t>> rest;
    int64_t given = 0;
    for (size_t c = 0; c < classes.size(); ++c) {
      const double exact = static_cast<double>(limit) * static_cast<double>(classes[c].size()) / n;
      quota[c] = static_cast<int64_t>(exact);
      given += quota[c];
      rest.push_back({exact - static_cast<double>(quota[c]), c});
    }
    std::stable_sort(rest.begin(), rest.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
    for (size_t r = 0; given < limit && r < rest.size(); ++r) quota[rest[r].second]++, ++given;
    LegacyRandomState rs(seed);
    for (size_t c = 0; c < classes.size(); ++c)
      for (int64_t i : rs.choice_without_replacement(classes[c], std::min<int64_t>(quota[c], classes[c].size())))
        keep.insert(i);
    return keep;
  }

  // Splits: native where the layout has them, the paper's draw otherwise; then bad samples out, the holdout
  // carve, the limits, and the hash.
  Dataset finish(const std::set<int64_t>* heldout_override = nullptr) {
    check_samples();
    const size_t n = d_.samples.size();
    d_.split.assign(n, Split::unused);
    std::vector<int64_t> pool;
    bool has_native_val = false, has_native = false;
    for (size_t i = 0; i < n; ++i) {
      if (native_[i] == Split::unused) pool.push_back(static_cast<int64_t>(i));
      else has_native = true;
      has_native_val |= native_[i] == Split::val;
    }
    std::set<int64_t> held;
    if (heldout_override) held = *heldout_override;
    else if (!pool.empty()) held = paper_heldout(pool, s_.heldout_fraction, s_.heldout_seed);
    for (size_t i = 0; i < n; ++i) {
      if (native_[i] != Split::unused) d_.split[i] = native_[i];
      else d_.split[i] = held.count(static_cast<int64_t>(i)) ? Split::test : Split::train;
      if (bad_[i] || excluded_[i]) d_.split[i] = Split::unused;
    }
    (void)has_native;
    d_.validation = has_native_val ? "fixed" : (s_.validation == "fixed" ? "paper" : s_.validation);

    // Limits first (the demo's small Fashion-MNIST), so the holdout is carved from the limited train pool.
    auto in_split = [&](Split s) {
      std::vector<int64_t> v;
      for (size_t i = 0; i < n; ++i)
        if (d_.split[i] == s) v.push_back(static_cast<int64_t>(i));
      return v;
    };
    const uint32_t base = static_cast<uint32_t>(s_.heldout_seed);
    if (s_.limit_train > 0) {
      const auto train = in_split(Split::train);
      const auto keep = subsample(train, s_.limit_train, base ^ 0x5EEDU);
      for (int64_t i : train)
        if (!keep.count(i)) d_.split[static_cast<size_t>(i)] = Split::unused;
    }
    if (s_.limit_test > 0) {
      const auto test = in_split(Split::test);
      const auto keep = subsample(test, s_.limit_test, base ^ 0x7E57U);
      for (int64_t i : test)
        if (!keep.count(i)) d_.split[static_cast<size_t>(i)] = Split::unused;
    }
    if (d_.validation == "holdout") {
      const auto train = in_split(Split::train);
      LegacyRandomState rs(static_cast<uint32_t>(s_.val_seed));
      for (const auto& rows : by_class(train)) {
        const auto k = static_cast<int64_t>(s_.val_fraction * static_cast<double>(rows.size()));
        for (int64_t i : rs.choice_without_replacement(rows, k)) d_.split[static_cast<size_t>(i)] = Split::val;
      }
    }
    Sha256 h;
    for (size_t i = 0; i < n; ++i)
      if (d_.split[i] != Split::unused) h.update(d_.samples[i].id + "," + split_name(d_.split[i]) + "\n");
    d_.split_hash = h.hex();
    if (d_.indices(Split::train).empty())
      throw Error::input(d_.root + ": dataset \"" + d_.name + "\" (" + d_.kind + ") has no usable training samples" +
                         (d_.problems.empty() ? "" : " (" + std::to_string(d_.problems.size()) + " problems, first: " +
                                                         d_.problems.front().reason + ")"));
    return std::move(d_);
  }

 private:
  Dataset d_;
  const SplitSettings& s_;
  std::vector<Split> native_;
  std::vector<bool> bad_;
  std::vector<bool> excluded_;
};

[[noreturn]] void layout_error(const std::string& kind, const std::string& root, const std::string& expected) {
  throw Error::input(root + ": not a " + kind + " dataset as downloaded: expected " + expected);
}

std::string join(const fs::path& a, const std::string& b) { return (a / b).string(); }

int parse_int(const std::string& s, bool* ok) {
  try {
    size_t used = 0;
    const int v = std::stoi(s, &used);
    *ok = used == s.size();
    return v;
  } catch (const std::exception&) {
    *ok = false;
    return -1;
  }
}

// APTOS 2019 and Cassava: train.csv (id, label) + train_images/.
Dataset open_kaggle_csv(Builder& b, const std::string& id_col, const std::string& label_col, const std::string& ext,
                        const std::vector<std::string>& names) {
  const fs::path root = b.d().root;
  const std::string csv = join(root, "train.csv");
  if (!fs::is_regular_file(csv) || !fs::is_directory(root / "train_images"))
    layout_error(b.d().kind, root.string(), "train.csv and train_images/ under it");
  const auto t = CsvTable::read(csv);
  const int ic = t.column(id_col), lc = t.column(label_col);
  b.d().class_names = names;
  for (size_t r = 0; r < t.rows.size(); ++r) {
    const auto& row = t.rows[r];
    Sample s;
    if (row.size() != t.header.size()) {
      s.id = row.empty() ? "" : row[0];
      const size_t i = b.add(std::move(s));
      b.reject(i, t.where(r), fmt::format("expected {} fields, got {}", t.header.size(), row.size()));
      continue;
    }
    s.id = row[ic];
    s.paths = {join(root / "train_images", s.id + ext)};
    bool ok = false;
    s.label = parse_int(row[lc], &ok);
    const bool in_range = ok && s.label >= 0 && s.label < static_cast<int>(names.size());
    const std::string raw = row[lc];
    if (!in_range) s.label = -1;
    const size_t i = b.add(std::move(s));
    if (!in_range)
      b.reject(i, t.where(r), fmt::format("label '{}' is not a class 0..{}", raw, names.size() - 1));
  }
  return b.finish();
}

// EuroSAT and ImageFolder: classes are the sorted folder names; files in sorted(os.walk) order, as torchvision.
void add_image_folder(Builder& b, const fs::path& dir, const std::vector<std::string>& classes, Split native,
                      const fs::path& id_base) {
  for (size_t c = 0; c < classes.size(); ++c) {
    const fs::path cdir = dir / classes[c];
    if (!fs::is_directory(cdir)) continue;
    std::vector<std::pair<std::string, std::string>> files;  // (folder, name): sorted(os.walk) order
    for (auto it = fs::recursive_directory_iterator(cdir, fs::directory_options::follow_directory_symlink);
         it != fs::recursive_directory_iterator(); ++it)
      if (it->is_regular_file() && is_image_file(it->path()))
        files.emplace_back(it->path().parent_path().string(), it->path().filename().string());
    std::sort(files.begin(), files.end());
    for (const auto& [folder, name] : files) {
      Sample s;
      const fs::path p = fs::path(folder) / name;
      s.id = fs::relative(p, id_base).string();
      s.paths = {p.string()};
      s.label = static_cast<int32_t>(c);
      b.add(std::move(s), native);
    }
  }
}

std::vector<std::string> subfolders(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir, fs::directory_options::follow_directory_symlink))
    if (e.is_directory()) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

Dataset open_eurosat(Builder& b) {
  fs::path dir = b.d().root;
  if (fs::is_directory(dir / "2750")) dir /= "2750";
  const auto classes = subfolders(dir);
  if (classes.empty()) layout_error("eurosat", b.d().root, "2750/<Class>/*.jpg (or <Class>/*.jpg) under it");
  b.d().class_names = classes;
  add_image_folder(b, dir, classes, Split::unused, dir);
  return b.finish();
}

Dataset open_imagefolder(Builder& b) {
  const fs::path root = b.d().root;
  const bool presplit = fs::is_directory(root / "train");
  if (!presplit) {
    const auto classes = subfolders(root);
    if (classes.empty()) layout_error("imagefolder", root.string(), "<class>/<image> or train/<class>/<image> under it");
    b.d().class_names = classes;
    add_image_folder(b, root, classes, Split::unused, root);
    return b.finish();
  }
  const auto classes = subfolders(root / "train");
  if (classes.empty()) layout_error("imagefolder", root.string(), "train/<class>/<image> under it");
  b.d().class_names = classes;
  add_image_folder(b, root / "train", classes, Split::train, root);
  for (const auto& [sub, split] : {std::pair<const char*, Split>{"val", Split::val}, {"test", Split::test}}) {
    if (!fs::is_directory(root / sub)) continue;
    for (const auto& c : subfolders(root / sub))
      if (std::find(classes.begin(), classes.end(), c) == classes.end())
        b.problem("", (root / sub / c).string(), (root / sub / c).string(),
                  "class folder \"" + c + "\" is not among the training classes; its images are skipped");
    add_image_folder(b, root / sub, classes, split, root);
  }
  // Without a test folder the paper's draw holds out part of train; with one, train stays whole.
  if (!fs::is_directory(root / "test")) {
    return b.finish();
  }
  std::set<int64_t> none;
  return b.finish(&none);
}

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

Dataset open_melanoma(Builder& b) {
  const fs::path root = b.d().root;
  auto year_dir = [&](std::initializer_list<const char*> names) -> fs::path {
    for (const char* n : names)
      if (fs::is_regular_file(root / n / "train.csv")) return root / n;
    return {};
  };
  const fs::path y2020 = year_dir({"melanoma-2020", "jpeg-melanoma-512x512", "2020"});
  const fs::path y2019 = year_dir({"melanoma-2019", "jpeg-isic2019-512x512", "2019"});
  if (y2020.empty()) layout_error("melanoma", root.string(), "melanoma-2020/train.csv and melanoma-2020/train/ under it");
  if (b.settings().melanoma_2019 && y2019.empty())
    layout_error("melanoma", root.string(), "melanoma-2019/train.csv (or set melanoma_2019 = false)");
  b.d().class_names = {"benign", "malignant"};
  // np.random.seed(23) once; per year, folds = the non-negative tfrecord values (a Python set of small ints
  // iterates in ascending order), choice(folds, int(0.8 · #folds), replace=False) → train folds.
  LegacyRandomState rs(static_cast<uint32_t>(b.settings().heldout_seed));
  std::set<int64_t> held;
  std::vector<std::pair<fs::path, std::string>> years = {{y2020, "2020"}};
  if (b.settings().melanoma_2019) years.push_back({y2019, "2019"});
  for (const auto& [dir, year] : years) {
    const auto t = CsvTable::read((dir / "train.csv").string());
    const int nc = t.column("image_name"), lc = t.column("target"), fc = t.column("tfrecord");
    std::vector<int64_t> fold_of;
    std::set<int64_t> folds;
    std::vector<size_t> ids;
    for (size_t r = 0; r < t.rows.size(); ++r) {
      const auto& row = t.rows[r];
      Sample s;
      s.group = year;
      if (row.size() != t.header.size()) {
        s.id = row.empty() ? "" : row[0];
        b.reject(b.add(std::move(s)), t.where(r), fmt::format("expected {} fields, got {}", t.header.size(), row.size()));
        continue;
      }
      s.id = row[nc];
      s.paths = {(dir / "train" / (s.id + ".jpg")).string()};
      bool ok_l = false, ok_f = false;
      s.label = parse_int(row[lc], &ok_l);
      const int fold = parse_int(row[fc], &ok_f);
      const bool label_ok = ok_l && (s.label == 0 || s.label == 1);
      if (!label_ok) s.label = -1;
      const size_t i = b.add(std::move(s));
      if (!label_ok) b.reject(i, t.where(r), "target '" + row[lc] + "' is not 0 or 1");
      else if (!ok_f) b.reject(i, t.where(r), "tfrecord '" + row[fc] + "' is not an integer");
      if (ok_f && fold >= 0) folds.insert(fold);
      fold_of.push_back(ok_f ? fold : -1);
      ids.push_back(i);
    }
    const std::vector<int64_t> fold_list(folds.begin(), folds.end());
    const auto train_folds = rs.choice_without_replacement(fold_list, static_cast<int64_t>(0.8 * fold_list.size()));
    const std::set<int64_t> train_set(train_folds.begin(), train_folds.end());
    for (size_t r = 0; r < ids.size(); ++r) {
      if (fold_of[r] < 0) b.exclude(ids[r]);  // outside every fold: in neither split, as in the released code
      else if (!train_set.count(fold_of[r])) held.insert(static_cast<int64_t>(ids[r]));
    }
  }
  return b.finish(&held);
}

Dataset open_cct20(Builder& b) {
  const fs::path root = b.d().root;
  const fs::path ann = root / "eccv_18_annotation_files", img = root / "eccv_18_all_images_sm";
  if (!fs::is_directory(ann) || !fs::is_directory(img))
    layout_error("cct20", root.string(), "eccv_18_annotation_files/ and eccv_18_all_images_sm/ under it");
  // The ECCV'18 classes without "empty" (30), in the released code's order.
  const std::vector<int> kClasses = {1, 3, 5, 6, 7, 8, 9, 10, 11, 16, 21, 33, 34, 51, 99};
  std::map<int, std::string> names;
  for (const auto& [file, split] : {std::pair<const char*, Split>{"train_annotations.json", Split::train},
                                    {"cis_val_annotations.json", Split::val},
                                    {"cis_test_annotations.json", Split::test}}) {
    const fs::path p = ann / file;
    if (!fs::is_regular_file(p)) layout_error("cct20", root.string(), "eccv_18_annotation_files/" + std::string(file));
    nlohmann::json j;
    try {
      std::ifstream in(p);
      j = nlohmann::json::parse(in);
    } catch (const std::exception& e) {
      throw Error::input(p.string() + ": not valid JSON (" + e.what() + ")");
    }
    if (j.contains("categories"))
      for (const auto& c : j["categories"])
        if (c.contains("id") && c.contains("name")) names[c["id"].get<int>()] = c["name"].get<std::string>();
    if (!j.contains("annotations") || !j["annotations"].is_array())
      throw Error::input(p.string() + ": no \"annotations\" array (COCO-style annotation file expected)");
    size_t k = 0;
    for (const auto& a : j["annotations"]) {
      ++k;
      const std::string where = p.string() + ": annotation " + std::to_string(k);
      Sample s;
      if (!a.contains("image_id") || !a.contains("category_id")) {
        s.id = a.contains("id") ? a["id"].dump() : "annotation-" + std::to_string(k);
        b.reject(b.add(std::move(s), split), where, "no image_id or category_id");
        continue;
      }
      const int cat = a["category_id"].get<int>();
      if (cat == 30) continue;  // "empty" is not a class in the paper
      s.id = a.contains("id") ? (a["id"].is_string() ? a["id"].get<std::string>() : a["id"].dump())
                              : std::string(split_name(split)) + "-" + std::to_string(k);
      const std::string image_id = a["image_id"].is_string() ? a["image_id"].get<std::string>() : a["image_id"].dump();
      s.paths = {(img / (image_id + ".jpg")).string()};
      const auto it = std::find(kClasses.begin(), kClasses.end(), cat);
      s.label = it == kClasses.end() ? -1 : static_cast<int32_t>(it - kClasses.begin());
      const size_t i = b.add(std::move(s), split);
      if (it == kClasses.end()) b.reject(i, where, "category_id " + std::to_string(cat) + " is not one of CCT-20's 15 classes");
    }
  }
  for (int c : kClasses) b.d().class_names.push_back(names.count(c) ? names[c] : "category " + std::to_string(c));
  std::set<int64_t> none;
  return b.finish(&none);
}

Dataset open_csv_manifest(Builder& b) {
  const fs::path root = b.d().root;
  const fs::path manifest = root / b.settings().manifest;
  if (!fs::is_regular_file(manifest)) layout_error("csv", root.string(), "the manifest " + b.settings().manifest);
  const auto t = CsvTable::read(manifest.string());
  const int pc = t.column("path"), ic = t.find_column("id"), sc = t.find_column("split");
  const int lc = t.find_column("label"), mc = t.find_column("labels");
  if ((lc < 0) == (mc < 0))
    throw Error::input(manifest.string() + ":1: expected exactly one of the columns 'label' (one class) or 'labels' "
                                           "(multi-label, space-separated)");
  const bool multi = mc >= 0;
  b.d().multilabel = multi;
  // Classes: integers as given (0..max), else the sorted distinct names.
  const int col = multi ? mc : lc;
  std::set<std::string> names;
  bool all_int = true;
  for (const auto& row : t.rows) {
    if (row.size() != t.header.size()) continue;
    std::string tok;
    for (char c : row[col] + " ") {
      if (c == ' ' || c == ';' || c == '|') {
        if (!tok.empty()) {
          bool ok = false;
          const int v = parse_int(tok, &ok);
          all_int &= ok && v >= 0 && v < 100000;
          names.insert(tok);
        }
        tok.clear();
        if (!multi) break;
      } else {
        tok += c;
      }
    }
  }
  std::map<std::string, int> index;
  if (all_int) {
    int k = 0;
    for (const auto& n : names) k = std::max(k, std::stoi(n) + 1);
    for (int c = 0; c < k; ++c) b.d().class_names.push_back(std::to_string(c)), index[std::to_string(c)] = c;
  } else {
    for (const auto& n : names) index[n] = static_cast<int>(b.d().class_names.size()), b.d().class_names.push_back(n);
  }
  bool any_native = false;
  for (size_t r = 0; r < t.rows.size(); ++r) {
    const auto& row = t.rows[r];
    Sample s;
    if (row.size() != t.header.size()) {
      s.id = row.empty() ? "" : row[0];
      b.reject(b.add(std::move(s)), t.where(r), fmt::format("expected {} fields, got {}", t.header.size(), row.size()));
      continue;
    }
    s.id = ic >= 0 ? row[ic] : row[pc];
    s.paths = {(fs::path(row[pc]).is_absolute() ? fs::path(row[pc]) : root / row[pc]).string()};
    Split native = Split::unused;
    std::string reason;
    if (sc >= 0 && !row[sc].empty()) {
      const std::string v = row[sc];
      native = v == "train" ? Split::train : (v == "val" || v == "valid" || v == "validation") ? Split::val
               : v == "test" ? Split::test : Split::unused;
      if (native == Split::unused) reason = "split '" + v + "' is not train, val or test";
      any_native = true;
    }
    if (multi) {
      std::string tok;
      for (char c : row[col] + " ") {
        if (c == ' ' || c == ';' || c == '|') {
          if (!tok.empty()) {
            const auto it = index.find(tok);
            if (it == index.end()) reason = "label '" + tok + "' is not a class";
            else if (std::find(s.labels.begin(), s.labels.end(), it->second) == s.labels.end())
              s.labels.push_back(static_cast<uint16_t>(it->second));
          }
          tok.clear();
        } else {
          tok += c;
        }
      }
      std::sort(s.labels.begin(), s.labels.end());
    } else {
      const auto it = index.find(row[col]);
      if (it == index.end()) reason = "label '" + row[col] + "' is not a class";
      else s.label = it->second;
    }
    const size_t i = b.add(std::move(s), native);
    if (!reason.empty()) b.reject(i, t.where(r), reason);
  }
  if (any_native) {
    std::set<int64_t> none;
    return b.finish(&none);
  }
  return b.finish();
}

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

Dataset open_idx(Builder& b) {
  const fs::path root = b.d().root;
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
      max_label = std::max(max_label, s.label);
      pending.emplace_back(std::move(s), part.split);
    }
  }
  const bool has_test = std::any_of(pending.begin(), pending.end(), [](const auto& p) { return p.second == Split::test; });
  for (int c = 0; c <= max_label; ++c) b.d().class_names.push_back(std::to_string(c));
  for (auto& [s, split] : pending) b.add(std::move(s), has_test ? split : Split::unused);
  b.d().memory = memory;
  if (has_test) {
    std::set<int64_t> none;
    return b.finish(&none);
  }
  return b.finish();
}

}  // namespace

Dataset open(const std::string& name, const std::string& kind, const std::string& root, const SplitSettings& s) {
  std::error_code ec;
  if (!fs::is_directory(root, ec))
    throw Error::input(root + ": dataset \"" + name + "\" (" + kind + "): the root folder does not exist");
  Builder b(name, kind, root, s);
  if (kind == "aptos")
    return open_kaggle_csv(b, "id_code", "diagnosis", ".png",
                           {"No DR", "Mild", "Moderate", "Severe", "Proliferative DR"});
  if (kind == "cassava")
    return open_kaggle_csv(b, "image_id", "label", "",
                           {"Cassava Bacterial Blight (CBB)", "Cassava Brown Streak Disease (CBSD)",
                            "Cassava Green Mottle (CGM)", "Cassava Mosaic Disease (CMD)", "Healthy"});
  if (kind == "eurosat") return open_eurosat(b);
  if (kind == "imagefolder") return open_imagefolder(b);
  if (kind == "hpa") return open_hpa(b);
  if (kind == "melanoma") return open_melanoma(b);
  if (kind == "cct20") return open_cct20(b);
  if (kind == "csv") return open_csv_manifest(b);
  if (kind == "idx") return open_idx(b);
  throw Error::input("dataset \"" + name + "\": unknown kind \"" + kind + "\"");
}

SplitSettings split_settings(const spec::Spec& spec, const spec::DatasetSpec& d) {
  SplitSettings s;
  s.validation = spec.validation_of(d);
  s.heldout_fraction = d.heldout_fraction;
  s.heldout_seed = spec.heldout_seed_of(d);
  s.val_fraction = d.val_fraction;
  s.val_seed = spec.val_seed_of(d);
  s.limit_train = d.limit_train;
  s.limit_test = d.limit_test;
  s.melanoma_2019 = d.melanoma_2019;
  s.manifest = d.manifest;
  s.split_file = d.split_file;
  s.strict = d.strict;
  return s;
}

Dataset open(const spec::Spec& spec, const spec::DatasetSpec& d) {
  if (!d.root.resolved())
    throw Error::input(d.root.where.str() + ": dataset \"" + d.name + "\": root \"" + d.root.raw + "\" names ${" +
                       d.root.unset_var + "}, which is unset");
  return open(d.name, d.kind, d.root.path, split_settings(spec, d));
}

void write_splits_csv(const Dataset& d, const std::string& path) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary);
    if (!out) throw Error::input(path + ": cannot write");
    out << "sample_id,split\n";
    for (size_t i = 0; i < d.samples.size(); ++i) {
      if (d.split[i] == Split::unused) continue;
      const std::string& id = d.samples[i].id;
      if (id.find_first_of(",\"\n") != std::string::npos) {
        std::string q = "\"";
        for (char c : id) q += c == '"' ? std::string("\"\"") : std::string(1, c);
        out << q << "\"," << split_name(d.split[i]) << "\n";
      } else {
        out << id << "," << split_name(d.split[i]) << "\n";
      }
    }
    if (!out) throw Error(path + ": write failed");
  }
  fs::rename(tmp, path);
}

}  // namespace xfer::data
