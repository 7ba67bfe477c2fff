#include <algorithm>

#include "xfer/spec/dataset_kind.hpp"
#include "xfer/spec/spec.hpp"

namespace xfer::spec {

namespace {
using M = Metric;
using KS = KindSetting;

KindSetting manifest_setting() {
  KS s{"manifest", KS::Type::string, "manifest.csv", KS::Keyed::always, &DatasetSpec::manifest, nullptr,
       "the manifest file under root (columns path, label or labels, optional id and split)"};
  return s;
}
KindSetting split_file_setting() {
  KS s{"split_file", KS::Type::string, "split.stratified.small.0.csv", KS::Keyed::unless_default,
       &DatasetSpec::split_file, nullptr, "the paper's split file, under root or root/splits/hpa"};
  return s;
}
KindSetting melanoma_2019_setting() {
  KS s{"melanoma_2019", KS::Type::boolean, "true", KS::Keyed::always, nullptr, &DatasetSpec::melanoma_2019,
       "add the 2019 challenge images as the paper does"};
  return s;
}
KindSetting classes_setting() {
  KS s{"classes", KS::Type::string, "", KS::Keyed::unless_default, &DatasetSpec::classes, nullptr,
       "the labels to keep, comma-separated (\"0,1,2,3,4\"), relabelled 0..k-1 in that order; empty: all"};
  return s;
}
}  // namespace

// Sizes: APTOS, Cassava and EuroSAT are the paper's draws (per class int(0.2 n_c) held out) on the full
// downloads; HPA is the fixed split file; Melanoma is 2020 + 2019 with 80 % of the folds in train; CCT-20 is the
// ECCV'18 split's image counts (approximate once "empty" is dropped). Used only to plan before data is staged.
// Melanoma, CCT-20 and HPA do not key heldout_fraction: folds or fixed files decide their split, not a fraction.
const std::vector<DatasetKind>& dataset_kinds() {
  static const std::vector<DatasetKind> kKinds = {
      {"cct20", M::accuracy, {M::accuracy, M::balanced_accuracy, M::log_loss}, Flips::h, -1, 0, false, true, true,
       15, 13553, 3484, 15827, false, false, {}},
      {"aptos", M::qwk, {M::qwk, M::accuracy, M::balanced_accuracy, M::log_loss}, Flips::h, 414, 0, false, false,
       true, 5, 2931, 0, 731, false, true, {}},
      {"hpa", M::macro_f1, {M::macro_f1, M::log_loss}, Flips::hv, -1, 0, true, true, true, 28, 22582, 5664, 2826,
       false, false, {split_file_setting()}},
      {"melanoma", M::roc_auc, {M::roc_auc, M::accuracy, M::balanced_accuracy, M::log_loss}, Flips::hv, 23, 0,
       false, false, true, 2, 46766, 0, 11691, false, false, {melanoma_2019_setting()}},
      {"cassava", M::accuracy, {M::accuracy, M::balanced_accuracy, M::log_loss}, Flips::hv, 414, 0, false, false,
       false, 5, 17120, 0, 4277, false, true, {}},
      {"eurosat", M::accuracy, {M::accuracy, M::balanced_accuracy, M::log_loss}, Flips::none, 42, 224, false,
       false, false, 10, 21600, 0, 5400, false, true, {}},
      {"imagefolder", M::accuracy, {M::accuracy, M::balanced_accuracy, M::qwk, M::roc_auc, M::log_loss}, Flips::h,
       0, 0, false, false, false, 0, 0, 0, 0, true, true, {}},
      {"csv", M::accuracy, {M::accuracy, M::balanced_accuracy, M::qwk, M::macro_f1, M::roc_auc, M::log_loss},
       Flips::h, 0, 0, false, false, false, 0, 0, 0, 0, true, true, {manifest_setting()}},
      {"idx", M::accuracy, {M::accuracy, M::balanced_accuracy, M::qwk, M::roc_auc, M::log_loss}, Flips::none, 0, 0,
       false, false, false, 0, 0, 0, 0, false, true, {classes_setting()}},
  };
  return kKinds;
}

const DatasetKind* find_dataset_kind(const std::string& kind) {
  for (const auto& k : dataset_kinds())
    if (k.kind == kind) return &k;
  return nullptr;
}

std::vector<std::string> dataset_kind_names() {
  std::vector<std::string> out;
  for (const auto& k : dataset_kinds()) out.push_back(k.kind);
  return out;
}

const std::vector<KindSetting>& all_kind_settings() {
  static const std::vector<KindSetting> kAll = [] {
    std::vector<KindSetting> out;
    for (const auto& k : dataset_kinds())
      for (const auto& s : k.settings)
        if (std::none_of(out.begin(), out.end(), [&](const KindSetting& o) { return o.key == s.key; }))
          out.push_back(s);
    return out;
  }();
  return kAll;
}

}  // namespace xfer::spec
