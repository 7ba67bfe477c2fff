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

bool escapes_folder(const std::string& rel) {
  const fs::path p(rel);
  if (p.is_absolute() || p.has_root_name() || p.has_root_directory()) return true;
  int depth = 0;
  for (const auto& part : p) {
    if (part == "..") {
      if (--depth < 0) return true;
    } else if (part != "." && !part.empty()) {
      ++depth;
    }
  }
  return false;
}

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
    if (escapes_folder(s.id + ext)) {
      const size_t i = b.add(std::move(s));
      b.reject(i, t.where(r), "sample id \"" + row[ic] + "\" names a file outside train_images/ (an absolute path "
                              "or `..` components); refused");
      continue;
    }
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

namespace {

[[noreturn]] void unreadable_folder(const fs::path& dir, const std::error_code& ec) {
  std::string why = ec.message();
  if (!why.empty()) why[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(why[0])));
  throw Error::input(dir.string() + ": cannot list this folder: " + why +
                     (ec == std::errc::permission_denied ? " (make it readable by the user running xfer: chmod a+rx)" : ""));
}

// One folder's entries, sorted by name; a folder that cannot be listed is an input error naming it.
std::vector<fs::directory_entry> entries(const fs::path& dir) {
  std::error_code ec;
  fs::directory_iterator it(dir, ec), end;
  if (ec) unreadable_folder(dir, ec);
  std::vector<fs::directory_entry> out;
  for (; it != end; it.increment(ec)) {
    if (ec) unreadable_folder(dir, ec);
    out.push_back(*it);
  }
  if (ec) unreadable_folder(dir, ec);
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.path().filename() < b.path().filename(); });
  return out;
}

std::string link_target(const fs::path& p) {
  std::error_code ec;
  const fs::path t = fs::read_symlink(p, ec);
  return ec ? std::string("?") : t.string();
}

}  // namespace

std::string broken_link_reason(const fs::path& p) {
  std::error_code ec;
  if (!fs::is_symlink(fs::symlink_status(p, ec))) return "";
  (void)fs::status(p, ec);
  if (ec == std::errc::too_many_symbolic_link_levels) return "symbolic link loop (" + p.string() + " → " + link_target(p) + ")";
  return "broken symbolic link → " + link_target(p);
}

void walk_images(const fs::path& dir, const std::function<void(const fs::path&)>& image,
                 const std::function<void(const fs::path&, const std::string&)>& problem) {
  // (folder, name) pairs in sorted(os.walk) order, as torchvision lists them; directory links are followed, except
  // one that leads back to a folder already on the way down (a loop: `loop -> ..`), which is skipped and reported.
  std::vector<std::pair<std::string, std::string>> files;
  std::vector<fs::path> stack;  // canonical folders from dir down to the current one
  std::function<void(const fs::path&)> visit = [&](const fs::path& folder) {
    std::error_code ec;
    stack.push_back(fs::canonical(folder, ec));
    for (const auto& e : entries(folder)) {
      const fs::path& p = e.path();
      const bool link = e.is_symlink(ec);
      const fs::file_status st = fs::status(p, ec);
      if (ec) {
        if (link) problem(p, broken_link_reason(p) + "; skipped");
        else if (is_image_file(p)) problem(p, "cannot read the file's status: " + ec.message() + "; skipped");
        ec.clear();
        continue;
      }
      if (fs::is_directory(st)) {
        if (link) {
          const fs::path target = fs::canonical(p, ec);
          // A loop: the target is a folder on the way down, or above one (`loop -> ..`).
          const auto above_or_same = [&](const fs::path& f) {
            auto t = target.begin(), u = f.begin();
            for (; t != target.end() && u != f.end(); ++t, ++u)
              if (*t != *u) return false;
            return t == target.end();
          };
          if (!ec && std::any_of(stack.begin(), stack.end(), above_or_same)) {
            problem(p, "symbolic link loop: " + p.filename().string() + " → " + link_target(p) +
                           " leads back to " + target.string() + "; skipped");
            continue;
          }
        }
        visit(p);
      } else if (fs::is_regular_file(st) && is_image_file(p)) {
        files.emplace_back(p.parent_path().string(), p.filename().string());
      }
    }
    stack.pop_back();
  };
  visit(dir);
  std::sort(files.begin(), files.end());
  for (const auto& [folder, name] : files) image(fs::path(folder) / name);
}

// EuroSAT and ImageFolder: classes are the sorted folder names; files in sorted(os.walk) order, as torchvision.
void add_image_folder(Builder& b, const fs::path& dir, const std::vector<std::string>& classes, Split native,
                      const fs::path& id_base) {
  for (size_t c = 0; c < classes.size(); ++c) {
    const fs::path cdir = dir / classes[c];
    std::error_code ec;
    if (!fs::is_directory(cdir, ec)) continue;
    walk_images(
        cdir,
        [&](const fs::path& p) {
          Sample s;
          s.id = fs::relative(p, id_base).string();
          s.paths = {p.string()};
          s.label = static_cast<int32_t>(c);
          b.add(std::move(s), native);
        },
        [&](const fs::path& p, const std::string& reason) {
          b.problem(p.lexically_relative(id_base).string(), p.string(), p.string(), reason);
        });
  }
}

std::vector<std::string> subfolders(const fs::path& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : entries(dir))
    if (fs::is_directory(e.path(), ec)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace xfer::data
