// `xfer score`: any predictions file, scored exactly as the study scores it.
#include <memory>
#include <iostream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <CLI/CLI.hpp>

#include "commands.hpp"
#include "xfer/metrics/csv.hpp"
#include "xfer/metrics/metrics.hpp"

namespace xfer::app {

int score(const ScoreOptions& o) {
  metrics::Runtime kokkos;
  const metrics::Metric m = metrics::parse_metric(o.metric);
  const metrics::Labels y = metrics::read_labels_csv(o.labels);
  const metrics::Scores s = metrics::read_scores_csv(o.scores);
  try {
    metrics::validate(m, y, s);
  } catch (const Error& e) {
    throw Error::input(o.labels + " / " + o.scores + ": " + e.what());
  }
  std::vector<double> thresholds;
  const std::vector<double>* thr = nullptr;
  if (!o.thresholds_from.empty()) {
    const auto comma = o.thresholds_from.find(',');
    if (comma == std::string::npos)
      throw Error::input("--thresholds-from: expected VAL_LABELS,VAL_SCORES, got '" + o.thresholds_from + "'");
    if (!y.multilabel) throw Error::input("--thresholds-from: per-class thresholds apply to multi-label labels");
    const auto vy = metrics::read_labels_csv(o.thresholds_from.substr(0, comma));
    const auto vs = metrics::read_scores_csv(o.thresholds_from.substr(comma + 1));
    if (!vy.multilabel || vy.k != y.k)
      throw Error::input(fmt::format("--thresholds-from: validation labels need {} multi-label columns", y.k));
    thresholds = metrics::tune_thresholds(vy, vs);
    thr = &thresholds;
  }
  const double value = metrics::evaluate(m, y, s, thr);
  metrics::Interval iv;
  if (o.bootstrap > 0) iv = metrics::bootstrap(m, y, s, o.bootstrap, o.seed, o.level, thr);

  if (o.json) {
    nlohmann::ordered_json j{{"metric", metrics::metric_name(m)}, {"value", value}, {"n", y.n}};
    if (thr) j["thresholds"] = thresholds;
    if (o.bootstrap > 0)
      j["interval"] = {{"lo", iv.lo}, {"hi", iv.hi}, {"level", iv.level}, {"std_error", iv.std_error},
                       {"resamples", iv.resamples}, {"undefined_resamples", iv.undefined}, {"seed", iv.seed}};
    std::cout << j.dump() << "\n";
    return 0;
  }
  std::cout << fmt::format("# {} on {} samples, {} ({} classes){}\n", metrics::metric_name(m), y.n,
                           y.multilabel ? "multi-label" : "single-label", y.multilabel ? y.k : std::max(y.k, s.k == 1 ? 2 : s.k),
                           thr ? ", per-class thresholds tuned on validation" : "");
  if (o.bootstrap > 0)
    std::cout << fmt::format("# {:.0f}% bootstrap interval ({} resamples, seed {}): [{}, {}]\n", 100 * iv.level,
                             iv.resamples, iv.seed, iv.lo, iv.hi);
  std::cout << fmt::format("{}\n", value);
  return 0;
}

Command score_command(CLI::App& cli) {
  auto o = std::make_shared<ScoreOptions>();
  auto* sub = cli.add_subcommand("score", "Score a predictions file with a study metric (scikit-learn semantics)");
  sub->add_option("--metric", o->metric, "accuracy|balanced_accuracy|qwk|macro_f1|roc_auc|log_loss")->required();
  sub->add_option("--labels", o->labels, "CSV, no header: one class per row, or k 0/1 columns (multi-label)")
      ->required();
  sub->add_option("--scores", o->scores, "CSV, no header: k scores per row (binary: 1 column p(positive) or 2)")
      ->required();
  sub->add_option("--thresholds-from", o->thresholds_from,
                        "VAL_LABELS,VAL_SCORES: tune per-class thresholds on validation (multi-label macro_f1)");
  sub->add_flag("--json", o->json, "print {\"metric\": NAME, \"value\": V}");
  sub->add_option("--bootstrap", o->bootstrap, "resamples for a percentile interval (0: none)")
      ->check(CLI::NonNegativeNumber);
  sub->add_option("--seed", o->seed, "bootstrap seed");
  sub->add_option("--level", o->level, "interval level")->check(CLI::Range(0.5, 0.9999));
  return {sub, nullptr, [o](sweep::MpiRuntime*) { return score(*o); }};
}

}  // namespace xfer::app
