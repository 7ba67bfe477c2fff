// data/kinds/cassava: Cassava Leaf Disease (train.csv, train_images/<image_id>); paper seed 414.
#include "kind_opener.hpp"

namespace xfer::data {

namespace {
Dataset open_cassava(Builder& b) {
  return open_kaggle_csv(b, "image_id", "label", "",
                         {"Cassava Bacterial Blight (CBB)", "Cassava Brown Streak Disease (CBSD)",
                          "Cassava Green Mottle (CGM)", "Cassava Mosaic Disease (CMD)", "Healthy"});
}
}  // namespace

const KindOpener& cassava_kind() {
  static const KindOpener k{"cassava", open_cassava, nullptr};
  return k;
}

}  // namespace xfer::data
