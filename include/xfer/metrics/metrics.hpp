// metrics: each dataset's competition metric over plain arrays — accuracy, balanced accuracy, quadratic weighted
// kappa, macro-F1 (multi-label with 0.5 or tuned per-class thresholds, or multiclass), binary ROC-AUC, log-loss —
// and a seeded bootstrap for any of them. Kernels are Kokkos (Serial here, OpenMP/CUDA on clusters); this header
// is plain C++. Semantics follow scikit-learn 1.2 exactly; the tests compare against it. Knows nothing of torch,
// datasets, MPI or HDF5.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "xfer/core/error.hpp"
#include "xfer/core/vocabulary.hpp"

namespace xfer::metrics {

// The metric names and which way each improves are core's vocabulary (xfer::Metric, xfer::higher_is_better).
using Metric = xfer::Metric;

Metric parse_metric(const std::string& name);  // throws Error (input) listing the names
std::string metric_name(Metric m);

// Ground truth: one class per sample (0..k-1), or for multi-label a row of k 0/1 values.
struct Labels {
  int64_t n = 0;
  int k = 0;                    // number of classes (single-label: at least max label + 1)
  bool multilabel = false;
  std::vector<int32_t> single;  // n
  std::vector<uint8_t> multi;   // n × k, row-major
};

// Model outputs: n × k scores or probabilities, row-major. Binary tasks may give one column, p(positive).
struct Scores {
  int64_t n = 0;
  int k = 0;
  std::vector<double> values;
};

// The metric is not defined for this input (ROC-AUC with one class present, kappa when every label and
// prediction is the same class, macro-F1 over no classes). Callers decide: `xfer score` reports it as an error,
// the trainer records NaN with the message.
class Undefined : public Error {
 public:
  explicit Undefined(const std::string& what) : Error(what, Kind::input) {}
};

// Shapes and values: n matches, labels in range, no NaN scores, probabilities in [0, 1] for log-loss, binary
// labels for ROC-AUC, multi-label only with macro-F1. Throws Error (input) naming the row and column.
void validate(Metric m, const Labels& y, const Scores& s);

// Computes the metric. Definitions (scikit-learn 1.2):
// - accuracy: mean of [argmax(s_i) == y_i]; one column: predicted 1 iff p > 0.5 (argmax of [1-p, p], ties → 0).
// - balanced_accuracy: mean recall over the classes present in y.
// - qwk: cohen_kappa_score(y, argmax, weights="quadratic", labels=0..k-1): weights (i-j)² by class value.
// - macro_f1: multi-label: predicted iff s > threshold (0.5, or `thresholds` per class), F1 per class with 0 for
//   0/0 (zero_division=0), mean over all k classes — absent classes count as 0; single-label: mean F1 over the
//   classes present in y or in the predictions (sklearn's default labels).
// - roc_auc: binary, the score of class 1 (the last column); ties count ½ (Mann–Whitney = sklearn's trapezoid).
// - log_loss: probabilities clipped to [ε, 1-ε] (ε = 2.22e-16) and each row renormalised, mean -log p(y).
double evaluate(Metric m, const Labels& y, const Scores& s, const std::vector<double>* thresholds = nullptr);

// Confusion matrix of argmax predictions, k × k row-major, rows = truth (single-label).
std::vector<int64_t> confusion_matrix(const Labels& y, const Scores& s);

// Per-class F1 (multi-label: over all k classes with the thresholds; single-label: one entry per class 0..k-1,
// 0 for classes never seen in truth or predictions).
std::vector<double> per_class_f1(const Labels& y, const Scores& s, const std::vector<double>* thresholds = nullptr);

// Per-class thresholds maximising each class's F1 on a validation set (multi-label). Predicted iff s > t; t lies
// midway between the last score predicted positive and the next lower score; among equal F1, the higher threshold.
// A class with no positives in validation keeps 0.5.
std::vector<double> tune_thresholds(const Labels& val_y, const Scores& val_s);

struct Interval {
  double value = 0;      // on the full data
  double lo = 0, hi = 0; // percentile interval
  double std_error = 0;  // standard deviation of the resampled values
  int resamples = 0;
  int undefined = 0;     // resamples where the metric was undefined (e.g. one class drawn), left out
  uint64_t seed = 0;
  double level = 0.95;
};

// Seeded bootstrap over samples: `resamples` draws of n samples with replacement (counter-based generator, so
// the result does not depend on the backend or thread count), percentile interval at `level`.
Interval bootstrap(Metric m, const Labels& y, const Scores& s, int resamples, uint64_t seed, double level = 0.95,
                   const std::vector<double>* thresholds = nullptr);

// Keeps Kokkos initialised for its lifetime (after MPI_Init, before any kernel), unless someone else already did.
class Runtime {
 public:
  Runtime();
  ~Runtime();
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;
  static std::string backend();  // e.g. "Serial"

 private:
  bool owner_ = false;
};

}  // namespace xfer::metrics
