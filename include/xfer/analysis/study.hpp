// analysis/study: a study's answer — one point per (model, dataset) chosen by the selection rule, the statistics
// over the models of each dataset, augmentation deltas and hyperparameter sensitivity — from a results file or a
// plain CSV; and its outputs (tables, figures, HDF5 /analysis, an HTML report, JSON).
#pragma once

#include <map>
#include <utility>
#include <string>
#include <vector>

#include "xfer/analysis/stats.hpp"

namespace xfer::analysis {

struct Point {
  std::string model;
  double top1 = kNaN;       // ImageNet top-1, percent
  double value = kNaN;      // the metric in its own units (accuracy, kappa, F1, AUC as fractions)
  double lo = kNaN, hi = kNaN;  // per-point interval, same units
  std::string interval;     // how it was obtained (empty: none)
  int64_t n_test = 0;
  int seeds = 1;
  std::string key;          // the selected trial (results input)
  std::string grid_point;   // e.g. "adamw lr=0.001 wd=0.0001"
  std::string weights;      // the trial's weights tag ("random-init", "torchvision:…", "upstream:<stage>:<key>")
  std::string upstream_key; // the pre-training trial whose backbone it fine-tuned ("" if none)
  std::string architecture; // the model it was pre-trained from (the upstream trial's model), else the model
};

// An architecture fine-tuned from its own weights (the control) against the same architecture pretrained — by the
// study's upstream stage, or on ImageNet (the control of <model> is then named <model>_random_init) — on one
// downstream dataset.
struct Comparison {
  std::string architecture, control_model, control_weights;
  double control = kNaN;                 // metric, own units
  double pretrained_best = kNaN, pretrained_mean = kNaN;
  std::string best_model;
  int pretrained = 0;                    // pre-trained models of the architecture with a result
  bool better() const { return pretrained_best > control; }
};

// One pre-training trial of an [[upstream]] stage, as the results file holds it.
struct UpstreamRun {
  std::string key, model, dataset, status, augmentation;
  int epochs = 0;
  int64_t seed = 0;
  double top1 = kNaN;                    // percent, measured on the stage's test split
};

struct DatasetResult {
  std::string name, metric, validation;
  // Which pretrained models are its points: "imagenet" (x: ImageNet top-1) or "upstream" (x: the measured top-1 of
  // the study's own pre-training). A study with both has two results per task, the upstream one named
  // "<task> [upstream]", never one axis for both.
  std::string family = "imagenet";
  std::string x_label;      // its x-axis ("" = the study's x_label)
  std::vector<Point> points;
  std::vector<std::string> notes;  // why a statistic is missing, what the rule implies
  bool has_stats = false;
  Correlation pearson, spearman, kendall;
  Fit fit;                  // metric (pp) on ImageNet top-1 (pp)
  bool logit_ok = false;
  Fit logit_fit;            // logit(metric) on logit(top-1)
  BootstrapResult boot;
  std::vector<double> band_x;
  double delta_r2 = kNaN, r2_with_others = kNaN;
  Interval delta_r2_ci;
  double sensitivity_pp = kNaN;  // mean over models of (selected test − median test over grid points), pp
  int sensitivity_models = 0;
  bool unreliable = false;  // fewer than kReliableModels models: the bootstrap over models is not to be trusted
  std::vector<Point> controls;          // random-init controls of its points' architectures (not on the fit)
  std::vector<Comparison> comparisons;  // each control against its pre-trained versions
};

// Fewer models than this and a bootstrap over models says little (the resamples repeat a handful of points): such
// intervals are flagged unreliable on screen and in the report.
inline constexpr size_t kReliableModels = 8;

struct AugmentationDelta {
  std::string recipe, dataset;
  int models = 0;
  double mean_delta_pp = kNaN, min_delta_pp = kNaN, max_delta_pp = kNaN;
};

struct Options {
  std::string selection;   // paper | holdout | oracle ("" = by validation, as the results were produced)
  int resamples = 10000;   // bootstrap over models
  int point_resamples = 1000;  // bootstrap over test samples for per-point intervals
  uint64_t seed = 0;
  double level = 0.95;
};

struct Study {
  std::string source;      // the file analysed
  std::string name;        // the study's name
  std::string selection;   // the rule in force, as a label
  std::string selection_note;
  int resamples = 0;
  uint64_t seed = 0;
  double level = 0.95;
  std::vector<DatasetResult> datasets;
  std::vector<AugmentationDelta> augmentation;
  std::map<std::string, std::string> provenance;
  std::string spec_text;
  bool from_results = false;
  // What the x-axis is: "ImageNet top-1", or the measured top-1 of an upstream stage's pre-trained models.
  std::string x_label = "ImageNet top-1";
  std::vector<UpstreamRun> upstream;
  // Statements that come first on screen and in the report: what was pre-trained on what, and random-init weights.
  std::vector<std::string> headline;
  std::vector<std::string> random_init;  // models whose weights are random-init
};

// A metric's range in percentage points (the metric × 100): 0–100 for proportions, −100–100 for kappa, 0–∞ for
// log-loss. Bands and axes are clipped to it.
std::pair<double, double> metric_range_pp(const std::string& metric);

// Selection from a results file (every epoch of every trial is in /curves, so any rule can be recomputed).
Study from_results(const std::string& path, const Options& o);
// A plain table with header model,imagenet_top1,dataset,value[,n_test]. Values in [0, 1] or in percent: a dataset
// whose values include one above 1 is read as percent. Several rows per (model, dataset) are replicates (seeds).
Study from_csv(const std::string& path, const Options& o);
// Statistics, the bootstrap and ΔR² for every dataset; notes where something is undefined.
void compute(Study& s, const Options& o);

// Outputs.
std::string to_json(const Study& s);
void write_tables(const Study& s, const std::string& dir);        // summary.md/.csv, points.csv, augmentation.*
std::vector<std::string> write_figures(const Study& s, const std::string& dir);  // SVG + PNG via gnuplot
void write_to_results(const Study& s, const std::string& results_path);          // /analysis in the HDF5 file
std::string report_html(const Study& s, const std::string& figures_dir);
std::string summary_text(const Study& s);

}  // namespace xfer::analysis
