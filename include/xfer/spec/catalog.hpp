// spec/catalog: what xfer knows without being told — the paper's 19 models (metadata, not weights). The dataset
// kinds are in spec/dataset_kind.hpp (included here for the callers that look both up).
#pragma once

#include <array>
#include <string>
#include <vector>

#include "xfer/spec/dataset_kind.hpp"

namespace xfer::spec {

struct CatalogModel {
  std::string name;          // the constructor's name; the backbone file is <models_dir>/<name>.pt
  std::string display;       // as the paper's table names it
  std::string source;        // torchvision | timm
  std::string head;          // the layer the paper replaces
  double imagenet_top1;      // percent, the library's published value
  int fixed_input_size;      // 224 for patch-grid models (DeiT), else 0
  double crop_pct;
  std::array<double, 3> mean, std;
  std::string weights;
  double gmacs;              // approximate forward GMACs at 224x224 (published; used only for cost)
  int feature_dim;
};

// The paper's 19 models in order of ImageNet top-1.
const std::vector<CatalogModel>& paper_models();
const CatalogModel* find_catalog_model(const std::string& name);

}  // namespace xfer::spec
