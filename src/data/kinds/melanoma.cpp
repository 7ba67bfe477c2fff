// data/kinds/melanoma: SIIM-ISIC 2020 (+ ISIC 2019) at 512 px; the paper splits by tfrecord folds (seed 23).
#include <fmt/format.h>

#include "kind_opener.hpp"
#include "../csv_table.hpp"

namespace xfer::data {

namespace {

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

}  // namespace

const KindOpener& melanoma_kind() {
  static const KindOpener k{"melanoma", open_melanoma, nullptr};
  return k;
}

}  // namespace xfer::data
