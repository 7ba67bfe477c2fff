// data/kinds/cct20: Caltech Camera Traps 20 (ECCV'18 split: train, cis_val, cis_test), "empty" dropped.
#include <fstream>
#include <map>

#include <nlohmann/json.hpp>

#include "kind_opener.hpp"

namespace xfer::data {

namespace {

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

}  // namespace

const KindOpener& cct20_kind() {
  static const KindOpener k{"cct20", open_cct20, nullptr};
  return k;
}

}  // namespace xfer::data
