// core/vocabulary: the closed sets of words a study is written in — a trial's status, a dataset's metric, how
// validation is chosen, the optimizer family and its weight-decay convention, the schedule, the precision, the
// augmentation, the flips, and the trainer's gradient exchange and input pipeline — each an enum class with one name table. Strings appear only at the edges (TOML, HDF5,
// JSON, the command line), through `name()` and `parse<E>()`; everything inside compares enums.
#pragma once

#include <array>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "xfer/core/error.hpp"

namespace xfer {

// A trial's state in the ledger. pending: not started; running: started by a job that has not reported its end
// (orphaned when that job died); the rest are the trainer's outcomes.
enum class TrialStatus { pending, running, done, failed, diverged, oom, interrupted };

// Whose fault a trial's end is, when it did not end done: the trial's own (retried up to max_attempts), the
// input's (the data or the spec must change first: not retried in the same run), or the environment's (a full
// disk, an I/O error, a missing device — the same for every trial: the sweep stops, the attempt is not spent).
enum class Cause { none, trial, input, environment };

// The datasets' competition metrics (paper §3): metrics/ computes them, analysis/ compares by them.
enum class Metric { accuracy, balanced_accuracy, qwk, macro_f1, roc_auc, log_loss };

// Where a trial's validation set comes from. fixed: the dataset ships one (a val/ folder, a split column);
// paper: validation is the test set, as the paper's protocol does where no validation split exists; holdout: a
// seeded fraction of train is held out.
enum class Validation { fixed, paper, holdout };

enum class Optimizer { adamw, sgd };
// over_lr: the optimizer gets weight_decay / lr (the paper's AdamW grid); plain: weight_decay as given.
enum class WdMode { over_lr, plain };
enum class Schedule { cosine, cosine_step, step };
enum class Precision { auto_, fp32, bf16, fp16 };
enum class Augmentation { none, randaugment, augmix, colour_affine };
enum class Flips { none, h, hv };
// How a data-parallel group sums gradients (train/gradient_exchange.hpp): buckets summed during backward (overlap),
// the same buckets after backward (bucketed), one bucket after backward (flat).
enum class ExchangeMode { overlap, bucketed, flat };
// Where batches are made: data::Loader on CPU threads (host), or a decoded cache cropped on the device (device).
enum class InputPipeline { host, device };

namespace vocabulary {
template <class E>
struct Names;  // specialised below: `static constexpr std::array<std::pair<E, std::string_view>, N> table`, `what`

#define XFER_NAMES(E, WHAT, ...)                                                            \
  template <>                                                                               \
  struct Names<E> {                                                                         \
    static constexpr std::string_view what = WHAT;                                          \
    static constexpr std::pair<E, std::string_view> table[] = {__VA_ARGS__};                \
  };
XFER_NAMES(TrialStatus, "status", {TrialStatus::pending, "pending"}, {TrialStatus::running, "running"},
           {TrialStatus::done, "done"}, {TrialStatus::failed, "failed"}, {TrialStatus::diverged, "diverged"},
           {TrialStatus::oom, "oom"}, {TrialStatus::interrupted, "interrupted"})
XFER_NAMES(Metric, "metric", {Metric::accuracy, "accuracy"}, {Metric::balanced_accuracy, "balanced_accuracy"},
           {Metric::qwk, "qwk"}, {Metric::macro_f1, "macro_f1"}, {Metric::roc_auc, "roc_auc"},
           {Metric::log_loss, "log_loss"})
XFER_NAMES(Validation, "validation", {Validation::fixed, "fixed"}, {Validation::paper, "paper"},
           {Validation::holdout, "holdout"})
XFER_NAMES(Optimizer, "optimizer", {Optimizer::adamw, "adamw"}, {Optimizer::sgd, "sgd"})
XFER_NAMES(WdMode, "wd_mode", {WdMode::over_lr, "over_lr"}, {WdMode::plain, "plain"})
XFER_NAMES(Schedule, "schedule", {Schedule::cosine, "cosine"}, {Schedule::cosine_step, "cosine_step"},
           {Schedule::step, "step"})
XFER_NAMES(Precision, "precision", {Precision::auto_, "auto"}, {Precision::fp32, "fp32"}, {Precision::bf16, "bf16"},
           {Precision::fp16, "fp16"})
XFER_NAMES(Augmentation, "augmentation", {Augmentation::none, "none"}, {Augmentation::randaugment, "randaugment"},
           {Augmentation::augmix, "augmix"}, {Augmentation::colour_affine, "colour_affine"})
XFER_NAMES(Flips, "flips", {Flips::none, "none"}, {Flips::h, "h"}, {Flips::hv, "hv"})
XFER_NAMES(ExchangeMode, "gradient exchange", {ExchangeMode::overlap, "overlap"}, {ExchangeMode::bucketed, "bucketed"},
           {ExchangeMode::flat, "flat"})
XFER_NAMES(InputPipeline, "input pipeline", {InputPipeline::host, "host"}, {InputPipeline::device, "device"})
#undef XFER_NAMES
}  // namespace vocabulary

// The word for a value (as written in specs, HDF5 attributes and JSON).
template <class E>
constexpr std::string_view name(E e) {
  for (const auto& [v, n] : vocabulary::Names<E>::table)
    if (v == e) return n;
  return "?";
}
template <class E>
std::string name_str(E e) {
  return std::string(name(e));
}

// The value for a word, or nothing.
template <class E>
constexpr std::optional<E> try_parse(std::string_view word) {
  for (const auto& [v, n] : vocabulary::Names<E>::table)
    if (n == word) return v;
  return std::nullopt;
}

// The words, in the table's order (command-line choices).
template <class E>
std::vector<std::string> words() {
  std::vector<std::string> out;
  for (const auto& [v, n] : vocabulary::Names<E>::table) out.emplace_back(n);
  return out;
}

// The list of words, "a | b | c", for error messages.
template <class E>
std::string names_list() {
  std::string out;
  for (const auto& [v, n] : vocabulary::Names<E>::table) {
    if (!out.empty()) out += " | ";
    out += n;
  }
  return out;
}

// The value for a word; Error (input) naming the word, `where` (a file:line, a column, a trial) and the choices.
template <class E>
E parse(std::string_view word, std::string_view where = {}) {
  if (auto v = try_parse<E>(word)) return *v;
  std::string msg;
  if (!where.empty()) msg.append(where).append(": ");
  msg.append("unknown ").append(vocabulary::Names<E>::what).append(" \"").append(word).append("\" (expected ");
  msg.append(names_list<E>()).append(")");
  throw Error::input(msg);
}

// The one place that says which way a metric improves (log-loss is the only lower-is-better one).
constexpr bool higher_is_better(Metric m) { return m != Metric::log_loss; }
constexpr bool lower_is_better(Metric m) { return !higher_is_better(m); }

// Ledger facts about a status. finished: the trial will not run again by itself (done, diverged); retryable: it
// failed in a way another attempt may fix (failed, oom).
constexpr bool finished(TrialStatus s) { return s == TrialStatus::done || s == TrialStatus::diverged; }
constexpr bool retryable(TrialStatus s) { return s == TrialStatus::failed || s == TrialStatus::oom; }

}  // namespace xfer
