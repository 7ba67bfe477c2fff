#include "kind_opener.hpp"

namespace xfer::data {

const std::vector<const KindOpener*>& kind_openers() {
  static const std::vector<const KindOpener*> kOpeners = {&cct20_kind(),   &aptos_kind(),   &hpa_kind(),
                                                          &melanoma_kind(), &cassava_kind(), &eurosat_kind(),
                                                          &imagefolder_kind(), &csv_kind(), &idx_kind()};
  return kOpeners;
}

const KindOpener* find_kind_opener(const std::string& kind) {
  for (const KindOpener* k : kind_openers())
    if (k->kind == kind) return k;
  return nullptr;
}

}  // namespace xfer::data
