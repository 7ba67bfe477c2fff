// spec: the experiment spec — a TOML file — as validated C++ values, the built-in catalogs, and the one reader
// that turns a file into a Spec or into an error naming file:line, key and what was expected.
// Knows nothing of torch, MPI, HDF5 or the dataset formats (those read the Spec, not the TOML).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "xfer/core/vocabulary.hpp"

namespace xfer::spec {

// Where a value came from: "inputs/paper.toml:12: key 'grid.epochs'".
struct Location {
  std::string file;
  int line = 0;
  std::string key;
  std::string str() const;
};

// A path from the spec after ${VAR} / ${VAR:-default} expansion, made absolute against the spec's folder.
// A path that names an unset variable stays unresolved: `xfer plan` plans it unchecked (a login node before the
// data or the models are staged) and says so; `xfer run` refuses it.
struct SpecPath {
  std::string raw;        // as written in the spec
  std::string path;       // expanded and absolute; empty when unresolved
  std::string unset_var;  // the first unset variable, if any
  Location where;
  bool resolved() const { return unset_var.empty(); }
};

struct StudySpec {
  std::string name;
  SpecPath results;              // the HDF5 results store
  int64_t seed = 0;              // root seed: holdout splits and anything else not fixed per trial derive from it
  std::string selection = "paper";  // paper | holdout (see DatasetSpec::validation)
  std::string catalog;           // "" or "paper": take model metadata from the built-in catalog
  SpecPath models_dir;           // catalog backbones are <models_dir>/<name>.pt
  std::vector<std::string> catalog_models;  // subset of the catalog (empty: all)
  int max_attempts = 3;          // a failed trial is retried this many times in all
  bool keep_best_model = false;  // keep the best epoch's weights after a trial ends
  SpecPath checkpoint_dir;       // default: <results>.ckpt next to the results file
  SpecPath upstream_dir;         // pre-trained backbones of [[upstream]] trials; default: <results>.upstream
  Location where;
};

// A model: a TorchScript backbone (features out) plus the metadata every plot and transform needs.
struct ModelSpec {
  std::string name;
  SpecPath backbone;
  double imagenet_top1 = 0;      // percent; the x-axis of every figure
  int input_size = 0;            // > 0: the architecture needs this size (patch grids); 0: dataset's or grid's
  double crop_pct = 1.0;         // eval: resize shorter side to round(S / crop_pct), centre-crop S (paper: 1)
  std::array<double, 3> mean{0.485, 0.456, 0.406};
  std::array<double, 3> std{0.229, 0.224, 0.225};
  std::string weights;           // the exact pretrained weights, e.g. "torchvision:ResNet50_Weights.IMAGENET1K_V1"
  double gmacs = 0;              // forward multiply-adds per 224x224 image, 1e9; 0: unknown (cost model)
  int feature_dim = 0;           // 0: found by a dry forward pass
  int ranks_per_trial = 0;       // 0: the grid's
  // A model pre-trained by an [[upstream]] trial of this study (grid::with_upstream adds them): the trial's key, its
  // index in the expansion and the architecture (a model of the spec) it started from. Empty / -1 otherwise.
  std::string upstream_key;
  int64_t upstream_trial = -1;
  std::string architecture;
  Location where;
};

// The validation a dataset will run with, decided once before trials are keyed (data::resolve_layouts): from the
// kind (CCT-20, HPA: fixed; APTOS..EuroSAT, IDX: the spec's) or, for kinds whose layout decides, from the layout.
struct ResolvedValidation {
  Validation validation = Validation::paper;
  bool layout_checked = false;  // the layout was inspected: data::open refuses a layout that no longer matches
  std::string basis;            // why, for `xfer plan` and error messages ("a val/ folder", "the kind", ...)
};

struct DatasetSpec {
  std::string name;
  std::string kind;              // cct20 | aptos | hpa | melanoma | cassava | eurosat | imagefolder | csv | idx
  SpecPath root;
  std::string metric;            // accuracy | balanced_accuracy | qwk | macro_f1 | roc_auc | log_loss
  int input_size = 0;            // 0: the kind's default (EuroSAT 224), else the grid's
  std::string flips;             // none | h | hv (default: the paper's choice for the kind)
  bool bgr_quirk = false;        // reproduce the released code's BGR input (CCT-20, APTOS, HPA, Melanoma)
  bool strict = false;           // a bad sample is an error instead of being skipped and reported
  // Splits.
  double heldout_fraction = 0.2; // the paper's held-out share per class
  int64_t heldout_seed = -1;     // -1: the paper's seed for the kind (APTOS/Cassava 414, EuroSAT 42, Melanoma 23)
  std::string validation;        // "": study.selection; paper (validate on held-out) | holdout (carve from train)
  double val_fraction = 0.1;     // holdout: share of each training class kept for validation
  int64_t val_seed = -1;         // -1: derived from study.seed and the dataset name
  // Kind-specific (spec::KindSetting: the reader fills a kind's own from the spec or the registry's default).
  std::string manifest;          // csv kind: manifest file under root
  std::string split_file;        // hpa kind: the paper's split file (root or root/splits/hpa)
  std::string classes;           // idx kind: "0,1,2,3,4" keeps these labels, relabelled 0..k-1 ("": all)
  bool melanoma_2019 = true;     // melanoma: add the 2019 challenge images as the paper does
  int64_t limit_train = 0;       // > 0: seeded stratified subsample of train (demo, smoke tests)
  int64_t limit_test = 0;        // > 0: same for the held-out / test set
  std::optional<ResolvedValidation> resolved;  // set by data::resolve_layouts; the key and the data use it
  bool upstream_only = false;    // named by an [[upstream]] stage: pre-training data, not a downstream task
  Location where;
};

struct OptimizerSpec {
  std::string family;            // adamw | sgd
  std::vector<double> lrs;
  std::vector<double> weight_decays;  // empty: the grid's
  std::string wd_mode;           // adamw: over_lr (paper: optimiser weight_decay = wd / lr) | plain; sgd: plain
  double momentum = 0.9;         // sgd
  bool nesterov = true;          // sgd
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;  // adamw
  Location where;
};

struct GridSpec {
  std::vector<OptimizerSpec> optimizers;
  std::vector<double> weight_decays;
  std::vector<std::string> augmentations{"none"};  // none | randaugment | augmix | colour_affine
  std::vector<int64_t> seeds{0};
  int epochs = 30;
  int batch_size = 128;
  int input_size = 256;
  int ranks_per_trial = 1;
  std::string schedule = "cosine";  // cosine (stepped per epoch, paper) | cosine_step (per step) | step
  std::vector<int> step_milestones{15, 20, 25};
  double step_gamma = 0.1;
  int warmup_epochs = 0;
  double label_smoothing = 0.0;
  std::string precision = "auto";  // auto (bf16 autocast on CUDA, fp32 on CPU) | fp32 | bf16 | fp16
  Location where;
};

// [[override]]: settings for the trials whose model and dataset names match the globs. Later overrides win.
struct OverrideSpec {
  std::string model = "*";
  std::string dataset = "*";
  std::optional<int> input_size, batch_size, epochs, ranks_per_trial;
  std::optional<std::string> precision;
  Location where;
};

// [[upstream]]: a pre-training stage inside the study. Each listed model (an architecture of the spec, from its own
// weights) is trained on the stage's dataset at every point of the stage's recipe grid (lrs × weight decays ×
// augmentations × epochs × seeds); every such run is a trial of the same ledger, and its best-by-validation backbone
// becomes a model that every downstream dataset fine-tunes with the [grid] recipe, plotted at its measured upstream
// top-1 (the test split of the stage's dataset).
struct UpstreamSpec {
  std::string name;
  std::string dataset;                 // a [[dataset]] of the spec; it becomes upstream-only
  std::vector<std::string> models;     // architectures (models of the spec) to pre-train
  std::string optimizer = "adamw";     // adamw (wd_mode over_lr, as the paper) | sgd
  std::vector<double> lrs{1e-3};
  std::vector<double> weight_decays{1e-4};
  std::vector<std::string> augmentations{"none"};
  std::vector<int64_t> epochs{5};
  std::vector<int64_t> seeds{0};
  int batch_size = 128;
  int input_size = 0;                  // 0: the dataset's, else the grid's
  Location where;
};

struct Spec {
  std::string path;              // the spec file as given
  std::string text;              // its full text (stored in the results file)
  StudySpec study;
  std::vector<ModelSpec> models;
  std::vector<DatasetSpec> datasets;
  GridSpec grid;
  std::vector<OverrideSpec> overrides;
  std::vector<UpstreamSpec> upstreams;
  bool upstream_models_added = false;  // grid::with_upstream has appended the pre-trained models

  const ModelSpec* find_model(const std::string& name) const;
  const DatasetSpec* find_dataset(const std::string& name) const;
  // The validation mode in force for a dataset: the resolved one (data::resolve_layouts); unresolved, "fixed" for
  // kinds with their own validation split, else the dataset's `validation`, else study.selection. Throws
  // xfer::Error for an unresolved dataset whose kind lets the layout decide (imagefolder, csv): keying it from the
  // spec alone is how an imagefolder with val/ came to be keyed `paper` while training on its val/ split.
  Validation validation_mode(const DatasetSpec& d) const;
  std::string validation_of(const DatasetSpec& d) const;
  // The mode the spec asks for, the layout aside: the dataset's `validation`, else study.selection.
  Validation requested_validation(const DatasetSpec& d) const;
  // The seeds in force for a dataset: its own, else the kind's paper seed (held-out draw), else derived from
  // study.seed and the dataset's name (holdout carve).
  int64_t heldout_seed_of(const DatasetSpec& d) const;
  int64_t val_seed_of(const DatasetSpec& d) const;
};

// Reads and validates a spec. Throws xfer::Error (input) naming file:line and key on the first problem:
// TOML syntax, unknown keys, wrong types, bad values, duplicates, overrides that match nothing, and backbone
// files or dataset roots that do not exist (unless under an unset variable).
Spec load(const std::string& path);
Spec parse(const std::string& text, const std::string& path);

// "${VAR}" and "${VAR:-default}" expansion. Returns nullopt and sets `unset` when a variable without default is
// unset or empty.
std::optional<std::string> expand_vars(const std::string& s, std::string* unset);

// fnmatch-style glob ('*', '?', '[...]') used by overrides.
bool glob_match(const std::string& pattern, const std::string& name);

// The augmentation recipes' names (core/vocabulary's), as the spec reader's choice list.
const std::vector<std::string>& augmentation_names();

}  // namespace xfer::spec
