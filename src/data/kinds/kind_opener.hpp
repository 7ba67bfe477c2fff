// data/kinds (internal to data/): each dataset kind's opener — the function that indexes a layout's samples and
// marks its native splits — one file per kind, listed explicitly in registry.cpp (static libraries drop objects
// that only register themselves). The kind's facts (metric, flips, seeds, keys) are spec::DatasetKind's.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "../dataset_builder.hpp"
#include "xfer/spec/spec.hpp"

namespace xfer::data {

struct KindOpener {
  std::string kind;            // its spec::dataset_kinds() entry
  Dataset (*open)(Builder&);   // reads the layout under the builder's root; ends with Builder::finish
  // Kinds whose layout decides the validation split (spec::DatasetKind::validation_from_layout): what in the layout on disk
  // is a validation split ("a val/ folder"), or nullopt when it has none. Must agree with `open`.
  std::optional<std::string> (*validation_split)(const fs::path& root, const spec::DatasetSpec& d);
};

const KindOpener& cct20_kind();
const KindOpener& aptos_kind();
const KindOpener& hpa_kind();
const KindOpener& melanoma_kind();
const KindOpener& cassava_kind();
const KindOpener& eurosat_kind();
const KindOpener& imagefolder_kind();
const KindOpener& csv_kind();
const KindOpener& idx_kind();

// Every opener, in spec::dataset_kinds() order.
const std::vector<const KindOpener*>& kind_openers();
const KindOpener* find_kind_opener(const std::string& kind);

}  // namespace xfer::data
