// spec/dataset_kind: the registry of dataset kinds — every fact about a kind that the spec reader, the trial key
// and the planner need: its metrics, flips, paper seed, planning sizes, the [[dataset]] keys only it accepts, the
// key fields it contributes, and where its validation split comes from. One entry per kind, nothing else holds
// these facts (the idea of timm's register_model, as an explicit list: static libraries drop unreferenced
// self-registering objects).
// The facts live here and the openers in data/ (data/kinds.hpp) because dependencies point one way: the spec
// reader and the grid must not include data/; data/ checks that every kind here has exactly one opener.
#pragma once

#include <string>
#include <vector>

#include "xfer/core/vocabulary.hpp"

namespace xfer::spec {

struct DatasetSpec;

// A [[dataset]] key that only some kinds accept, the DatasetSpec member it fills, and how it enters the trial key.
struct KindSetting {
  enum class Type { string, boolean };
  enum class Keyed { always, unless_default };  // unless_default: keys written before the setting existed stay valid
  std::string key;
  Type type = Type::string;
  std::string default_text;  // the default as the canonical text writes it ("manifest.csv", "true")
  Keyed keyed = Keyed::always;
  std::string DatasetSpec::*text = nullptr;  // Type::string
  bool DatasetSpec::*flag = nullptr;         // Type::boolean
  std::string description;
};

struct DatasetKind {
  std::string kind;
  Metric metric;                     // the competition's metric (the default)
  std::vector<Metric> metrics;       // those that make sense for it
  Flips flips;                       // the paper's train-time flips
  long heldout_seed;                 // the paper's seed (-1: fixed split files)
  int default_input_size;            // 0: the grid's
  bool multilabel;
  bool native_validation;            // ships its own validation split (CCT-20 cis_val, HPA val): always `fixed`
  bool bgr_in_paper;                 // reached the network as BGR in the released code
  int num_classes;                   // 0: read from the data
  // Sizes of the full dataset (train, validation, test) for planning before it is staged; 0: read from the data.
  long n_train, n_val, n_test;
  // The layout may carry a validation split (an imagefolder val/, a csv split column with val rows): `fixed` when
  // it does — data::resolve_layouts looks before trials are keyed — else, as for every kind without a native split,
  // the dataset's `validation`, else study.selection. The one part of a key that depends on the data on disk.
  bool validation_from_layout;
  bool keys_heldout_fraction;        // the held-out draw uses heldout_fraction (not Melanoma's folds), so it is keyed
  std::vector<KindSetting> settings; // the keys only this kind accepts, in canonical-text order
};

// Every kind, in the spec reader's order.
const std::vector<DatasetKind>& dataset_kinds();
const DatasetKind* find_dataset_kind(const std::string& kind);
std::vector<std::string> dataset_kind_names();
// Every kind-specific setting of any kind, once per key (for "applies only to kind = ..." messages).
const std::vector<KindSetting>& all_kind_settings();

}  // namespace xfer::spec
