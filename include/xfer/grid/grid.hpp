// grid: expands a Spec into trials — the full factorial over models × datasets × optimizer families (each with
// its own learning rates and weight decays) × augmentations × seeds — each fully resolved, keyed by a content hash
// (TrialKey) and costed. Knows the spec, nothing of data formats, torch, MPI or HDF5.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "xfer/core/vocabulary.hpp"
#include "xfer/spec/spec.hpp"

namespace xfer::grid {

// A stable content hash of a trial's fully resolved configuration: the first 16 hex digits (64 bits) of the SHA-256
// of TrialConfig::canonical_text(). It depends on nothing but the trial's own settings, so adding a seed, a model
// or a learning rate to a spec leaves every existing key unchanged.
class TrialKey {
 public:
  TrialKey() = default;
  explicit TrialKey(std::string hex) : hex_(std::move(hex)) {}
  const std::string& str() const { return hex_; }
  bool empty() const { return hex_.empty(); }
  friend bool operator==(const TrialKey& a, const TrialKey& b) { return a.hex_ == b.hex_; }
  friend bool operator!=(const TrialKey& a, const TrialKey& b) { return a.hex_ != b.hex_; }
  friend bool operator<(const TrialKey& a, const TrialKey& b) { return a.hex_ < b.hex_; }
  static constexpr size_t kHexDigits = 16;

 private:
  std::string hex_;
};

// Everything that determines a trial's result, resolved from the spec's defaults, catalog and overrides.
struct TrialConfig {
  // Model.
  std::string model;
  std::string weights;
  int input_size = 0;  // S: train crops and eval crops are S×S
  double crop_pct = 1.0;
  std::array<double, 3> mean{}, std{};
  // Dataset and its splits.
  std::string dataset;
  std::string kind;
  Metric metric = Metric::accuracy;
  Flips flips = Flips::none;
  bool bgr_quirk = false;
  Validation validation = Validation::paper;
  double heldout_fraction = 0.2;
  int64_t heldout_seed = 0;
  double val_fraction = 0.1;
  int64_t val_seed = 0;
  int64_t limit_train = 0, limit_test = 0;
  bool melanoma_2019 = true;
  std::string manifest;
  std::string split_file;
  std::string classes;  // idx kind: the labels kept ("": all)
  // Recipe.
  Optimizer optimizer = Optimizer::adamw;
  double lr = 0;
  double weight_decay = 0; // the grid's value
  WdMode wd_mode = WdMode::over_lr;  // over_lr: the optimiser gets weight_decay / lr (the paper's AdamW)
  double momentum = 0.9;
  bool nesterov = true;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  Schedule schedule = Schedule::cosine;
  std::vector<int> step_milestones;
  double step_gamma = 0.1;
  int warmup_epochs = 0;
  double label_smoothing = 0;
  Augmentation augmentation = Augmentation::none;
  int64_t seed = 0;
  int epochs = 0;
  int batch_size = 0;
  Precision precision = Precision::auto_;
  // The upstream stage ([[upstream]]): a pre-training trial is keyed with "stage=upstream"; a downstream trial of a
  // pre-trained model with its upstream trial's key. Both lines only when set, so keys of specs without an upstream
  // stage are unchanged.
  bool pretraining = false;
  std::string upstream;
  // Execution: how, not what — not part of the key.
  int ranks_per_trial = 1;

  // The weight decay handed to the optimiser.
  double optimizer_weight_decay() const { return wd_mode == WdMode::over_lr ? weight_decay / lr : weight_decay; }
  // "key=value" lines in a fixed order, only the fields that matter for this kind/family/schedule. A field added in
  // a later version must be written only when it differs from its default, so existing keys stay valid.
  std::string canonical_text() const;
  std::string canonical_head() const;    // the lines a (model, dataset) cell fixes
  std::string canonical_recipe() const;  // the recipe's lines
  std::string canonical_tail() const;    // epochs, batch size, precision
  // A kind-specific setting (spec::KindSetting::key) as its canonical text; Error for a key without a field here.
  std::string kind_setting_text(const std::string& key) const;
  TrialKey key() const;
};

struct Trial {
  TrialKey key;
  TrialConfig config;
  size_t model_index = 0;    // into Spec::models
  size_t dataset_index = 0;  // into Spec::datasets
  size_t order = 0;          // position in the deterministic expansion order
  int64_t upstream_index = -1;  // the pre-training trial whose backbone it fine-tunes (its position), -1: none
};

// The upstream stage. Pre-training trials come first in the expansion: for each [[upstream]] stage, each of its
// models, lrs × weight decays × augmentations × epochs × seeds, on the stage's dataset. with_upstream() appends one
// model per pre-training trial to spec.models — named <architecture>+<stage>[-e<epochs>][-s<seed>]…, its backbone
// <upstream_dir>/<key>.pt, written when that trial is done — so every downstream dataset fine-tunes it like any
// model. Call it after data::with_layouts_resolved and before expand(), plan_cells() or for_each_trial().
spec::Spec with_upstream(spec::Spec spec);
std::vector<Trial> upstream_trials(const spec::Spec& spec);
uint64_t count_upstream_trials(const spec::Spec& spec);
// The datasets the downstream grid runs on (those no [[upstream]] stage names), by index into spec.datasets.
std::vector<size_t> downstream_datasets(const spec::Spec& spec);

// The most trials one spec may have: 10^7. Every trial is held in memory by `xfer run` (about 1 KB each when
// expanded) and gets a row in /trials, and 10^7 trials of one GPU-minute each are 19 GPU-years, so a larger grid is
// a typo or a study to split. `xfer plan` counts and costs a grid without expanding it, so it can say so at once.
inline constexpr uint64_t kMaxTrials = 10'000'000;

// Trials per (model, dataset) cell — the same for every cell: Σ over optimizer entries of lrs × weight decays, times
// augmentations × seeds. count_trials: that times models × datasets. Both computed from the axes' lengths without
// expanding anything; they saturate at UINT64_MAX instead of overflowing.
uint64_t trials_per_cell(const spec::Spec& spec);
uint64_t count_trials(const spec::Spec& spec);
// Throws xfer::Error (input) naming the count, its factors and kMaxTrials when count_trials(spec) > kMaxTrials.
// expand(), for_each_trial() and plan_cells() call it first; a command can call it before any other work.
void check_trial_count(const spec::Spec& spec);

// Expands the full factorial in a deterministic order: models (spec order) × datasets × optimizer entries × lrs ×
// weight decays × augmentations × seeds. Throws xfer::Error (input) above kMaxTrials, if two points resolve to the
// same key, or if a batch is smaller than its rank group.
std::vector<Trial> expand(const spec::Spec& spec);

// One (model, dataset) cell without its trials: how many it has and the first of them (its key, and everything the
// cost model reads: input size, epochs, ranks — the same for every trial of the cell). In expansion order. Throws
// what expand() throws (the duplicate check is done on the recipes, which do not depend on the cell), in the same
// order, with the same messages; memory and time grow with the axes' lengths, not with the number of trials.
struct PlannedCell {
  size_t model_index = 0, dataset_index = 0;
  uint64_t trials = 0;
  Trial first;
};
std::vector<PlannedCell> plan_cells(const spec::Spec& spec);

// Calls fn for every trial in expand()'s order, one at a time, holding none of them (the Trial passed is reused).
// Checks the ceiling first, and the batch/ranks rule per cell; it does not look for duplicate keys — call
// plan_cells() (or expand()) first for that.
void for_each_trial(const spec::Spec& spec, const std::function<void(const Trial&)>& fn);

// How many images a trial touches per epoch, for the cost model.
struct DataSize {
  int64_t n_train = 0, n_val = 0, n_test = 0;
  bool val_is_test = false;  // validation and report on the same set (paper mode): evaluated once per epoch
  std::string source;        // "data", "catalog", "limits" or "unknown"
};

// Relative cost of a trial in estimated GFLOP: 2·GMACs(224)·(S/224)² per forward image, a training image costs three
// forwards (forward + backward), every epoch also evaluates validation and test.
double trial_cost_gflop(const TrialConfig& t, double gmacs_224, const DataSize& size);

// Estimated accelerator-hours from a training throughput (images/s per accelerator at the trial's S, eval assumed
// 3× faster than training); the group's size does not change the total.
double trial_gpu_hours(const TrialConfig& t, double train_images_per_s, const DataSize& size);

// DataSize for each dataset from the catalog (paper kinds) or the dataset's limits; `source` = "unknown" otherwise.
DataSize catalog_size(const spec::Spec& spec, const spec::DatasetSpec& d);

}  // namespace xfer::grid
