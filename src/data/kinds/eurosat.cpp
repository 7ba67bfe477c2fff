// data/kinds/eurosat: EuroSAT RGB as downloaded (2750/<Class>/*.jpg); the paper draws its held-out set (seed 42).
#include "kind_opener.hpp"

namespace xfer::data {

namespace {

Dataset open_eurosat(Builder& b) {
  fs::path dir = b.d().root;
  if (fs::is_directory(dir / "2750")) dir /= "2750";
  const auto classes = subfolders(dir);
  if (classes.empty()) layout_error("eurosat", b.d().root, "2750/<Class>/*.jpg (or <Class>/*.jpg) under it");
  b.d().class_names = classes;
  add_image_folder(b, dir, classes, Split::unused, dir);
  return b.finish();
}

}  // namespace

const KindOpener& eurosat_kind() {
  static const KindOpener k{"eurosat", open_eurosat, nullptr};
  return k;
}

}  // namespace xfer::data
