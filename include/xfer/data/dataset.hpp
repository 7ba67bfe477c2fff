// data: the six real-world datasets as users download them (plus ImageFolder, CSV manifests and IDX files), the
// paper's exact splits, image transforms on OpenCV, and a multi-threaded loader that fills float32 NCHW batches.
// Each dataset kind's opener is one file, src/data/kinds/<kind>.cpp, listed in kinds/registry.cpp; the kind's facts
// (metric, flips, seeds, keys) are spec::DatasetKind's. Owns deciding, from the layout on disk, the validation
// split a spec's datasets run with (resolve_layouts) before their trials are keyed.
// Knows the spec's dataset settings; nothing of torch, MPI, HDF5 or the trial grid.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "xfer/core/vocabulary.hpp"

namespace xfer::spec {
struct Spec;
struct DatasetSpec;
}  // namespace xfer::spec

namespace xfer::data {

enum class Split : uint8_t { train = 0, val = 1, test = 2, unused = 3 };
const char* split_name(Split s);

// One sample, named as the dataset names it (APTOS id_code, Cassava image_id, EuroSAT relative path, HPA Id,
// Melanoma image_name, CCT-20 annotation id, IDX "train/17").
struct Sample {
  std::string id;
  std::vector<std::string> paths;  // one image, or HPA's red, green, blue, yellow planes
  int32_t label = -1;              // single-label class
  std::vector<uint16_t> labels;    // multi-label: the positive classes
  int64_t memory_index = -1;       // IDX: row in Dataset::memory
  std::string group;               // Melanoma: "2020" or "2019"
};

// A sample (or class) that could not be used, and why. Kept with the run's report.
struct Problem {
  std::string id;
  std::string path;
  std::string reason;
};

// Images held in memory (IDX files): n × rows × cols, greyscale uint8.
struct MemoryImages {
  int64_t n = 0;
  int rows = 0, cols = 0;
  std::vector<uint8_t> pixels;
  const uint8_t* image(int64_t i) const { return pixels.data() + i * rows * cols; }
};

// How to split: resolved from a trial's configuration.
struct SplitSettings {
  Validation validation = Validation::paper;  // fixed | paper (validate on the held-out set) | holdout (carve from train)
  double heldout_fraction = 0.2;
  int64_t heldout_seed = 0;
  double val_fraction = 0.1;
  int64_t val_seed = 0;
  int64_t limit_train = 0, limit_test = 0;  // > 0: seeded stratified subsamples
  bool melanoma_2019 = true;
  std::string manifest = "manifest.csv";   // csv kind
  std::string split_file = "split.stratified.small.0.csv";  // hpa kind
  bool strict = false;                      // a problem is an error instead of a skipped, reported sample
  std::string classes;                      // idx kind: labels kept, relabelled 0..k-1 in this order ("": all)
  // Set when `validation` was resolved from the layout before trials were keyed (spec::ResolvedValidation):
  // opening then refuses a layout that no longer agrees instead of silently running another split.
  bool layout_checked = false;
  std::string resolved_basis;               // why it was resolved so, for that error
};

struct Dataset {
  std::string name, kind, root;
  bool multilabel = false;
  std::vector<std::string> class_names;
  std::vector<Sample> samples;
  std::vector<Split> split;  // per sample
  std::shared_ptr<const MemoryImages> memory;
  std::vector<Problem> problems;
  Validation validation = Validation::paper;  // the mode in force
  std::string split_hash;    // SHA-256 of the "sample_id,split" rows, in sample order

  int num_classes() const { return static_cast<int>(class_names.size()); }
  // Sample indices of a split, in dataset order. In paper mode the validation set is the held-out test set.
  std::vector<int64_t> indices(Split s) const;
  // Per-class counts in a split (multi-label: positives per class).
  std::vector<int64_t> class_counts(Split s) const;
};

// Reads the native layout under `root` and assigns splits. Paper kinds reproduce the released code's draws (numpy
// legacy RandomState); `holdout` carves a stratified validation set from train with the same algorithm and
// val_seed. Unusable samples (missing image, label out of range, duplicate id, malformed row, empty class) are
// skipped and listed in `problems`; with settings.strict they raise Error naming the file and line. A root that
// does not exist or matches no known layout of its kind raises Error (input) saying what was looked for.
Dataset open(const std::string& name, const std::string& kind, const std::string& root, const SplitSettings& s);

// Decides, once and before trials are keyed, the validation every dataset of the spec will run with, and writes it
// into DatasetSpec::resolved: the kind's own split (CCT-20, HPA), the spec's `validation` / study.selection, or —
// for kinds whose layout decides (imagefolder, csv) — `fixed` when the layout on disk has a validation split.
// A root that is unset or not there yet (planning before the data is staged) falls back to the spec's mode with
// a warning. Every caller that expands the grid or opens data from a spec calls this first.
void resolve_layouts(spec::Spec& spec);
spec::Spec with_layouts_resolved(spec::Spec spec);

// The kinds that have an opener, in registry order (the same as spec::dataset_kind_names()).
std::vector<std::string> opener_kinds();

// The split settings a spec gives a dataset (the same for every trial on it), and the dataset opened with them.
SplitSettings split_settings(const spec::Spec& spec, const spec::DatasetSpec& d);
Dataset open(const spec::Spec& spec, const spec::DatasetSpec& d);

// `xfer splits`: one row per sample, "sample_id,split" (unused samples are omitted).
void write_splits_csv(const Dataset& d, const std::string& path);

}  // namespace xfer::data
