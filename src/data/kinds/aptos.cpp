// data/kinds/aptos: APTOS 2019 Blindness Detection (train.csv, train_images/<id_code>.png); paper seed 414.
#include "kind_opener.hpp"

namespace xfer::data {

namespace {
Dataset open_aptos(Builder& b) {
  return open_kaggle_csv(b, "id_code", "diagnosis", ".png",
                         {"No DR", "Mild", "Moderate", "Severe", "Proliferative DR"});
}
}  // namespace

const KindOpener& aptos_kind() {
  static const KindOpener k{"aptos", open_aptos, nullptr};
  return k;
}

}  // namespace xfer::data
