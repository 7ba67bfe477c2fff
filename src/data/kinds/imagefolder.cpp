// data/kinds/imagefolder: torchvision's ImageFolder, flat (<class>/<image>) or pre-split (train/, val/, test/).
#include "kind_opener.hpp"

namespace xfer::data {

namespace {

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

// A pre-split root whose val/ holds an image in one of train/'s class folders: exactly what open_imagefolder
// reads as the validation split.
std::optional<std::string> imagefolder_validation_split(const fs::path& root, const spec::DatasetSpec&) {
  std::error_code ec;
  if (!fs::is_directory(root / "train", ec) || !fs::is_directory(root / "val", ec)) return std::nullopt;
  for (const auto& c : subfolders(root / "train")) {
    const fs::path dir = root / "val" / c;
    if (!fs::is_directory(dir, ec)) continue;
    bool any = false;
    walk_images(dir, [&](const fs::path&) { any = true; }, [](const fs::path&, const std::string&) {});
    if (any) return std::string("a val/ folder beside train/");
  }
  return std::nullopt;
}

}  // namespace

const KindOpener& imagefolder_kind() {
  static const KindOpener k{"imagefolder", open_imagefolder, imagefolder_validation_split};
  return k;
}

}  // namespace xfer::data
