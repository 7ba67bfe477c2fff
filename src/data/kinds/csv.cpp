// data/kinds/csv: a CSV manifest (path, label or labels, optional id and split) under the root.
#include <map>

#include <fmt/format.h>

#include "kind_opener.hpp"
#include "../csv_table.hpp"

namespace xfer::data {

namespace {

bool is_validation_word(const std::string& v) { return v == "val" || v == "valid" || v == "validation"; }

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
    // An absolute path is the manifest's explicit choice; a relative one stays under the root.
    std::string escape;
    if (!fs::path(row[pc]).is_absolute() && escapes_folder(row[pc]))
      escape = "path \"" + row[pc] + "\" (sample " + s.id + ") climbs out of the dataset root with `..`; refused "
               "(give an absolute path if the image really is elsewhere)";
    if (sc >= 0 && !row[sc].empty()) {
      const std::string v = row[sc];
      native = v == "train" ? Split::train : is_validation_word(v) ? Split::val
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
    if (!escape.empty()) reason = escape;
    const size_t i = b.add(std::move(s), native);
    if (!reason.empty()) b.reject(i, t.where(r), reason);
  }
  if (any_native) {
    std::set<int64_t> none;
    return b.finish(&none);
  }
  return b.finish();
}

// A split column with a validation row: exactly what open_csv_manifest reads as the validation split.
std::optional<std::string> csv_validation_split(const fs::path& root, const spec::DatasetSpec& d) {
  const fs::path manifest = root / d.manifest;
  std::error_code ec;
  if (!fs::is_regular_file(manifest, ec)) return std::nullopt;  // opening says the manifest is missing
  const auto t = CsvTable::read(manifest.string());
  const int sc = t.find_column("split");
  if (sc < 0) return std::nullopt;
  for (const auto& row : t.rows)
    if (row.size() == t.header.size() && is_validation_word(row[static_cast<size_t>(sc)]))
      return "val rows in the split column of " + d.manifest;
  return std::nullopt;
}

}  // namespace

const KindOpener& csv_kind() {
  static const KindOpener k{"csv", open_csv_manifest, csv_validation_split};
  return k;
}

}  // namespace xfer::data
