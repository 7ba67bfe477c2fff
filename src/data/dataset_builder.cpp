#include "dataset_builder.hpp"

#include <fmt/format.h>

#include "csv_table.hpp"

namespace xfer::data {

bool is_image_file(const fs::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  static const std::set<std::string> kExt = {".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp"};
  return kExt.count(ext) > 0;
}

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

}  // namespace xfer::data
