// spec/catalog: what xfer knows without being told — the paper's 19 models (metadata, not weights) and the
// dataset kinds (their metric, flips, seeds, split shape and, for planning before the data is staged, sizes).
#pragma once

#include <array>
#include <string>
#include <vector>

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

struct DatasetKind {
  std::string kind;
  std::string metric;                // the competition's metric
  std::vector<std::string> metrics;  // those that make sense for it
  std::string flips;                 // the paper's train-time flips
  long heldout_seed;                 // the paper's seed (-1: fixed split files)
  int default_input_size;            // 0: the grid's
  bool multilabel;
  bool native_validation;            // has its own validation split (CCT-20 cis_val, HPA val)
  bool bgr_in_paper;                 // reached the network as BGR in the released code
  int num_classes;                   // 0: read from the data
  // Sizes of the full dataset (train, validation, test) for planning before it is staged; 0: read from the data.
  long n_train, n_val, n_test;
};

const std::vector<DatasetKind>& dataset_kinds();
const DatasetKind* find_dataset_kind(const std::string& kind);

}  // namespace xfer::spec
