// Selection (which point stands for each model on each dataset) and the per-dataset statistics.
#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <numeric>
#include <set>
#include <sstream>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "xfer/analysis/study.hpp"
#include "xfer/core/error.hpp"
#include "xfer/metrics/metrics.hpp"
#include "xfer/store/store.hpp"

namespace xfer::analysis {

namespace {

// The study's metric names come from the results file (or "value" for a CSV input): unknown names improve upwards.
bool lower_is_better(const std::string& metric) {
  const auto m = try_parse<Metric>(metric);
  return m && xfer::lower_is_better(*m);
}
bool proportion_metric(const std::string& metric) {
  return metric == "accuracy" || metric == "balanced_accuracy" || metric == "macro_f1" || metric == "roc_auc" ||
         metric == "value";
}

double median(std::vector<double> v) {
  if (v.empty()) return kNaN;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

struct Candidate {
  const store::TrialRow* trial = nullptr;
  int epoch = -1;
  double val = kNaN, test = kNaN;
};

// The best (trial, epoch) of a set of trials by validation (or by test: the oracle), from the curves of each
// trial's latest attempt; a trial without curves contributes its recorded best epoch.
Candidate select(const std::vector<const store::TrialRow*>& trials,
                 const std::map<std::string, std::vector<const store::CurveRow*>>& curves, const std::string& metric,
                 bool by_test) {
  Candidate best;
  const bool lower = lower_is_better(metric);
  auto better = [&](double a, double b) { return std::isfinite(a) && (!std::isfinite(b) || (lower ? a < b : a > b)); };
  for (const auto* t : trials) {
    auto it = curves.find(t->key);
    if (it != curves.end() && !it->second.empty()) {
      int attempt = 0;
      for (const auto* c : it->second) attempt = std::max(attempt, c->attempt);
      for (const auto* c : it->second) {
        if (c->attempt != attempt) continue;
        const double score = by_test ? c->test_metric : c->val_metric;
        if (better(score, by_test ? best.test : best.val)) best = {t, c->epoch, c->val_metric, c->test_metric};
      }
    } else if (t->best_epoch >= 0) {
      const double score = by_test ? t->test_metric : t->val_metric;
      if (better(score, by_test ? best.test : best.val)) best = {t, t->best_epoch, t->val_metric, t->test_metric};
    }
  }
  return best;
}

std::string grid_point(const store::TrialRow& t) {
  return fmt::format("{} lr={} wd={}{}", t.optimizer, t.lr, t.weight_decay,
                     t.augmentation == "none" ? "" : " aug=" + t.augmentation);
}

// Per-point interval from the selected trial's test predictions (bootstrap over test samples).
void prediction_interval(const store::Results& res, const std::string& dataset, const std::string& metric,
                         const std::map<std::string, std::vector<store::SampleRow>>& samples, Point& p,
                         const Options& o) {
  const auto sets = res.predictions(p.key);
  const store::PredictionSet* test = nullptr;
  for (const auto& s : sets)
    if (s.split == "test") test = &s;
  if (!test)
    for (const auto& s : sets)
      if (s.split == "val") test = &s;  // paper mode: the validation set is the test set
  auto it = samples.find(dataset);
  if (!test || it == samples.end() || test->samples.empty()) return;
  const auto& rows = it->second;
  metrics::Labels y;
  y.n = static_cast<int64_t>(test->samples.size());
  y.k = test->classes;
  metrics::Scores s;
  s.n = y.n;
  s.k = test->classes;
  s.values.assign(test->scores.begin(), test->scores.end());
  const bool multi = metric == "macro_f1" && !rows.empty() && rows.front().label < 0;
  y.multilabel = multi;
  for (int64_t idx : test->samples) {
    if (idx < 0 || idx >= static_cast<int64_t>(rows.size())) return;
    const auto& r = rows[static_cast<size_t>(idx)];
    if (multi) {
      std::vector<uint8_t> row(test->classes, 0);
      std::stringstream ss(r.labels);
      for (int l; ss >> l;)
        if (l >= 0 && l < test->classes) row[l] = 1;
      y.multi.insert(y.multi.end(), row.begin(), row.end());
    } else {
      y.single.push_back(r.label);
    }
  }
  try {
    const auto iv = metrics::bootstrap(metrics::parse_metric(metric), y, s, o.point_resamples, o.seed, o.level);
    p.lo = iv.lo;
    p.hi = iv.hi;
    p.interval = fmt::format("bootstrap over {} test samples", y.n);
  } catch (const std::exception&) {
  }
}

// A random-init model named <model>_random_init is the control of <model> (an ImageNet-pretrained export of the same
// architecture, tools/export_backbones.py --random-init); otherwise of the models pre-trained from it upstream.
std::string control_architecture(const std::string& model) {
  static const std::string kSuffix = "_random_init";
  if (model.size() > kSuffix.size() && model.compare(model.size() - kSuffix.size(), kSuffix.size(), kSuffix) == 0)
    return model.substr(0, model.size() - kSuffix.size());
  return model;
}

// One family's points and controls into a dataset's result: the sensitivity over its models, each control against
// the pretrained models of its architecture, the points in order of their x.
void fill_family(DatasetResult& dr, std::vector<Point> points, std::vector<Point> controls,
                 const std::map<std::string, double>& gap_of, const std::string& metric) {
  dr.points = std::move(points);
  dr.controls = std::move(controls);
  // One backbone, one point: a pre-trained model fine-tuned again under another name (a file from before names were
  // kept when an upstream axis grew) is the same upstream trial, and counted once.
  std::map<std::string, std::string> point_of;  // upstream key → the model whose point stands for it
  dr.points.erase(std::remove_if(dr.points.begin(), dr.points.end(), [&](const Point& p) {
    if (p.upstream_key.empty()) return false;
    const auto [it, first] = point_of.emplace(p.upstream_key, p.model);
    if (!first)
      dr.notes.push_back(fmt::format("{}: the same backbone (upstream trial {}) as {}; counted once, as {}", p.model,
                                     p.upstream_key, it->second, it->second));
    return !first;
  }), dr.points.end());
  for (const auto* list : {&dr.points, &dr.controls})
    for (const auto& p : *list)
      if (const auto it = gap_of.find(p.model); it != gap_of.end()) {
        dr.sensitivity_pp = std::isfinite(dr.sensitivity_pp) ? dr.sensitivity_pp + it->second : it->second;
        dr.sensitivity_models++;
      }
  if (dr.sensitivity_models > 0) dr.sensitivity_pp /= dr.sensitivity_models;
  const double sign = lower_is_better(metric) ? -1 : 1;
  for (const auto& c : dr.controls) {
    Comparison cmp;
    cmp.architecture = c.architecture;
    cmp.control_model = c.model;
    cmp.control_weights = c.weights;
    cmp.control = c.value;
    double sum = 0;
    for (const auto& p : dr.points) {
      if (p.architecture != c.architecture) continue;
      ++cmp.pretrained;
      sum += p.value;
      if (!std::isfinite(cmp.pretrained_best) || sign * p.value > sign * cmp.pretrained_best)
        cmp.pretrained_best = p.value, cmp.best_model = p.model;
    }
    if (cmp.pretrained == 0) continue;
    cmp.pretrained_mean = sum / cmp.pretrained;
    dr.comparisons.push_back(cmp);
  }
  std::sort(dr.points.begin(), dr.points.end(), [](const Point& a, const Point& b) { return a.top1 < b.top1; });
}

// Per task of one family: whether the pretrained models beat their random-init controls, with each architecture's
// gain (best pretrained − control, in points of the metric, sign so that positive is better).
void state_gains(Study& s, const std::string& family, const std::string& pretrained) {
  for (const auto& d : s.datasets) {
    if (d.family != family || d.comparisons.empty()) continue;
    int wins = 0;
    double best_gain = kNaN;
    std::vector<std::string> gains;
    const double sign = lower_is_better(d.metric) ? -1 : 1;
    for (const auto& c : d.comparisons) {
      const double gain = sign * (c.pretrained_best - c.control) * 100.0;
      wins += gain > 0;
      if (!std::isfinite(best_gain) || gain > best_gain) best_gain = gain;
      gains.push_back(fmt::format("{} {:+.1f}", c.architecture, gain));
    }
    const bool random_controls = std::all_of(d.comparisons.begin(), d.comparisons.end(),
                                             [](const Comparison& c) { return c.control_weights == "random-init"; });
    s.headline.push_back(fmt::format(
        "{}: {} {} {} for {} of {} architecture(s) (best gain {:+.1f} pp of {}{}).", d.name, pretrained,
        wins > 0 ? "beats" : "does not beat", random_controls ? "random init" : "the architecture's own weights",
        wins, d.comparisons.size(), best_gain, d.metric,
        family == "imagenet" ? fmt::format("; per architecture: {}", fmt::join(gains, ", ")) : ""));
  }
}

// The first lines of `xfer analyze` and of the report: which models were pretrained on what (ImageNet, or this
// study's upstream stage — each family on its own axis), their random-init controls and what they say per task, and
// whether any model on an axis is random-init — the statistics of such a study are not the paper's answer, and must
// not look like it.
void describe_weights(Study& s, bool has_upstream) {
  std::set<std::string> random, random_on_axis;
  std::set<std::string> seen;
  for (const auto& d : s.datasets)
    for (const auto* list : {&d.points, &d.controls})
      for (const auto& p : *list) {
        seen.insert(p.model);
        if (p.weights == "random-init") random.insert(p.model);
        if (p.weights == "random-init" && list == &d.points && p.upstream_key.empty()) random_on_axis.insert(p.model);
      }
  s.random_init.assign(random.begin(), random.end());
  // The ImageNet-pretrained family, where random-init controls stand beside it (or an upstream stage is its second
  // part): what the models are, how few, and the gain per task.
  std::map<std::string, double> pretrained;  // model: ImageNet top-1
  std::set<std::string> tasks;
  bool controlled = false;
  for (const auto& d : s.datasets) {
    if (d.family != "imagenet") continue;
    controlled |= !d.comparisons.empty();
    for (const auto& p : d.points)
      if (p.weights != "random-init") pretrained[p.model] = p.top1, tasks.insert(d.name);
  }
  if (!pretrained.empty() && (controlled || has_upstream)) {
    std::vector<std::string> listed;
    double lo = 100, hi = 0;
    for (const auto& [m, t] : pretrained) {
      listed.push_back(fmt::format("{} {:.1f} %", m, t));
      lo = std::min(lo, t), hi = std::max(hi, t);
    }
    s.headline.push_back(fmt::format(
        "ImageNet-pretrained: {} model(s) ({}) fine-tuned on {}. The x-axis is their published ImageNet top-1; the "
        "same architectures fine-tuned from random weights (the random-init controls) stand beside them.",
        pretrained.size(), fmt::join(listed, ", "), fmt::join(tasks, ", ")));
    if (pretrained.size() < kReliableModels)
      s.headline.push_back(fmt::format(
          "{} model(s) spanning {:.1f} pp of ImageNet top-1 ({:.1f}–{:.1f} %) are a small sample: correlations and "
          "slopes over them say little about whether ImageNet progress transfers; the gain over random init, per "
          "architecture and task, is the firmer result.",
          pretrained.size(), hi - lo, lo, hi));
    state_gains(s, "imagenet", "ImageNet-pretrained");
  }
  if (has_upstream) {
    std::set<std::string> archs, sets;
    double lo = kNaN, hi = kNaN;
    for (const auto& u : s.upstream) {
      archs.insert(u.model), sets.insert(u.dataset);
      if (std::isfinite(u.top1)) lo = std::isfinite(lo) ? std::min(lo, u.top1) : u.top1, hi = std::isfinite(hi) ? std::max(hi, u.top1) : u.top1;
    }
    std::vector<std::string> downstream;
    for (const auto& d : s.datasets)
      if (d.family == "upstream") downstream.push_back(d.name);
    s.headline.push_back(fmt::format(
        "{}re-trained by this study: {} upstream run(s) of {} on {} (measured top-1 {}–{} % on its test split), each "
        "then fine-tuned on {}. The x-axis is that measured upstream top-1, not ImageNet top-1.",
        pretrained.empty() ? "P" : "Second part — p", s.upstream.size(), fmt::join(archs, ", "), fmt::join(sets, ", "),
        std::isfinite(lo) ? fmt::format("{:.1f}", lo) : "?", std::isfinite(hi) ? fmt::format("{:.1f}", hi) : "?",
        fmt::join(downstream, ", ")));
    if (!random.empty())
      s.headline.push_back(fmt::format(
          "Random-init weights: {} — the architectures started from random weights; fine-tuned from those weights "
          "without pre-training they are the random-init controls.",
          fmt::join(random, ", ")));
    state_gains(s, "upstream", "pre-trained");
  } else if (!random_on_axis.empty()) {
    s.headline.push_back(fmt::format(
        "RANDOM-INIT WEIGHTS: {} of {} model(s) ({}) were never trained on ImageNet. The x-axis shows their "
        "architectures' published ImageNet top-1, which these weights do not have: the statistics below describe "
        "random-init networks and do not answer whether ImageNet progress transfers.",
        random_on_axis.size(), seen.size(), fmt::join(random_on_axis, ", ")));
  }
}

}  // namespace

std::pair<double, double> metric_range_pp(const std::string& metric) {
  if (metric == "qwk") return {-100.0, 100.0};
  if (metric == "log_loss") return {0.0, std::numeric_limits<double>::infinity()};
  return {0.0, 100.0};
}

Study from_results(const std::string& path, const Options& o) {
  const auto res = store::Results::open_existing(path);
  Study s;
  s.source = path;
  s.from_results = true;
  s.provenance = res.provenance();
  s.spec_text = res.spec_text();
  // A damaged row (checksum mismatch) is left out, and said so: its values cannot be trusted.
  std::vector<store::TrialRow> trials;
  for (auto& t : res.trials()) {
    if (t.damage.empty()) {
      trials.push_back(std::move(t));
      continue;
    }
    spdlog::warn("{}: /trials {} is corrupted (checksum mismatch: {}); left out of the analysis", path,
                 store::describe_row(t), t.damage);
  }
  // The upstream stage: its pre-training trials, and the measured top-1 each gives its pre-trained model.
  std::map<std::string, const store::TrialRow*> row_of;
  std::set<std::string> upstream_datasets;
  for (const auto& t : trials) {
    row_of[t.key] = &t;
    if (t.stage != "upstream") continue;
    upstream_datasets.insert(t.dataset);
    s.upstream.push_back({t.key, t.model, t.dataset, t.status, t.augmentation, t.epochs, t.seed,
                          t.status == "done" && std::isfinite(t.test_metric) ? t.test_metric * 100.0 : kNaN});
  }
  const bool has_upstream = !s.upstream.empty();
  if (has_upstream)
    s.x_label = fmt::format("upstream top-1 on {} (measured)", fmt::join(upstream_datasets, ", "));
  const auto curves = res.curves();
  const auto models = res.models();
  const auto datasets = res.datasets();
  std::map<std::string, double> top1;
  for (const auto& m : models) top1[m.name] = m.imagenet_top1;
  std::map<std::string, std::vector<const store::CurveRow*>> by_key;
  for (const auto& c : curves) by_key[c.key].push_back(&c);
  std::map<std::string, std::vector<store::SampleRow>> samples;
  const bool by_test = o.selection == "oracle";
  s.selection = o.selection.empty() ? "by validation" : o.selection;
  if (by_test) s.selection_note = "oracle: grid point and epoch chosen on the test set — for comparison only, optimistic by construction";
  if (s.selection == "by validation" || s.selection == "paper")
    s.selection_note = "grid point and epoch chosen by the validation metric; test reported there";

  std::vector<DatasetResult> upstream_family;  // where a study has both families: the upstream one, after
  for (const auto& d : datasets) {
    if (upstream_datasets.count(d.name)) continue;  // pre-training data: its top-1 is the x-axis, not a task
    DatasetResult dr;
    dr.name = d.name;
    dr.metric = d.metric;
    dr.validation = d.validation;
    if (d.validation == "paper" && !by_test)
      dr.notes.push_back("no separate validation split: selection and report use the same held-out set (the paper's "
                         "rule; optimistic)");
    if (o.selection == "holdout" && d.validation == "paper") {
      dr.notes.push_back("holdout selection needs results produced with selection = \"holdout\" (a validation set "
                         "carved from train); this dataset was run in paper mode — no points");
      s.datasets.push_back(std::move(dr));
      continue;
    }
    // Trials of this dataset that finished, by model; the main analysis uses augmentation "none" where it exists.
    std::map<std::string, std::vector<const store::TrialRow*>> by_model;
    std::set<std::string> recipes;
    int64_t no_test = 0;
    std::string first_no_test;
    for (const auto& t : trials)
      if (t.dataset == d.name && t.stage != "upstream" && (t.status == "done" || t.status == "diverged")) {
        by_model[t.model].push_back(&t);
        recipes.insert(t.augmentation);
        if (t.status == "done" && !std::isfinite(t.test_metric) && no_test++ == 0) first_no_test = t.key;
      }
    // A done trial without a test metric (a test split where nothing decoded, before xfer refused that): no point,
    // and the reader is told why rather than left with "0 model(s)".
    if (no_test > 0)
      dr.notes.push_back(fmt::format("{} done trial(s) have no finite test {} (e.g. {}): no test image was usable? "
                                     "See /problems; they give no point", no_test, d.metric, first_no_test));
    std::vector<Point> imagenet_points, upstream_points, controls;
    std::map<std::string, double> gap_of;  // model: selected − median grid point (pp), for the sensitivity
    for (const auto& [model, list] : by_model) {
      std::vector<const store::TrialRow*> base;
      for (const auto* t : list)
        if (t->augmentation == "none") base.push_back(t);
      if (base.empty()) base = list;
      std::map<int64_t, std::vector<const store::TrialRow*>> by_seed;
      for (const auto* t : base) by_seed[t->seed].push_back(t);
      std::vector<double> values;
      Point p;
      p.model = model;
      p.top1 = top1.count(model) ? top1[model] : base.front()->imagenet_top1;
      p.weights = base.front()->weights;
      p.upstream_key = base.front()->upstream;
      p.architecture = model;
      if (!p.upstream_key.empty()) {
        const auto it = row_of.find(p.upstream_key);
        p.top1 = it != row_of.end() && it->second->status == "done" ? it->second->test_metric * 100.0 : kNaN;
        if (it != row_of.end()) p.architecture = it->second->model;
      }
      for (const auto& [seed, ts] : by_seed) {
        const Candidate c = select(ts, by_key, d.metric, by_test);
        if (!c.trial || !std::isfinite(c.test)) continue;
        values.push_back(c.test);
        if (p.key.empty()) p.key = c.trial->key, p.grid_point = grid_point(*c.trial) + fmt::format(" epoch {}", c.epoch + 1);
      }
      if (values.empty()) continue;
      p.seeds = static_cast<int>(values.size());
      p.value = std::accumulate(values.begin(), values.end(), 0.0) / static_cast<double>(values.size());
      p.n_test = d.n_test;
      if (values.size() >= 2) {
        std::tie(p.lo, p.hi) = mean_interval(values, o.level);
        p.interval = fmt::format("t-interval over {} seeds", values.size());
      } else if (d.metric == "accuracy" && d.n_test > 0) {
        const int64_t k = static_cast<int64_t>(std::llround(p.value * static_cast<double>(d.n_test)));
        std::tie(p.lo, p.hi) = clopper_pearson(k, d.n_test, o.level);
        p.interval = fmt::format("Clopper–Pearson, n = {}", d.n_test);
      } else if (!by_test && o.point_resamples > 0) {
        if (!samples.count(d.name)) samples[d.name] = res.samples(d.name);
        prediction_interval(res, d.name, d.metric, samples, p, o);
      }
      if (!p.upstream_key.empty() && !std::isfinite(p.top1)) {
        dr.notes.push_back(fmt::format("{}: its upstream trial {} has no measured top-1; left out", p.model, p.upstream_key));
        continue;
      }
      // Three kinds of model: pre-trained by the upstream stage (x: its measured top-1), pretrained elsewhere —
      // ImageNet — (x: its ImageNet top-1), and random-init (a control where a pretrained model of its
      // architecture exists or the study pre-trains; else a point, and the headline warns).
      if (!p.upstream_key.empty()) upstream_points.push_back(p);
      else if (p.weights == "random-init") p.architecture = control_architecture(model), controls.push_back(p);
      else imagenet_points.push_back(p);
      // Hyperparameter sensitivity: the selected point against the median grid point (seed of the first).
      std::vector<double> tests;
      for (const auto* t : by_seed.begin()->second)
        if (std::isfinite(t->test_metric)) tests.push_back(t->test_metric);
      if (tests.size() >= 2)
        gap_of[model] = (values.front() - median(tests)) * 100.0 * (lower_is_better(d.metric) ? -1 : 1);
    }
    // Which family each control belongs to: the ImageNet-pretrained models' when one of them has its architecture.
    std::set<std::string> imagenet_archs;
    for (const auto& p : imagenet_points) imagenet_archs.insert(p.architecture);
    std::vector<Point> imagenet_controls, other_controls;
    for (auto& c : controls) (imagenet_archs.count(c.architecture) ? imagenet_controls : other_controls).push_back(c);
    if (!has_upstream)  // random-init models nothing pairs with stay on the x-axis (the headline warns)
      imagenet_points.insert(imagenet_points.end(), other_controls.begin(), other_controls.end()), other_controls.clear();
    const bool both = has_upstream && !imagenet_points.empty();
    if (both) {  // the ImageNet-pretrained models first, on their own axis; the upstream stage's after, on its own
      DatasetResult up = dr;
      up.name = d.name + " [upstream]";
      up.family = "upstream";
      up.x_label = s.x_label;
      fill_family(up, std::move(upstream_points), std::move(other_controls), gap_of, d.metric);
      upstream_family.push_back(std::move(up));
      dr.x_label = "ImageNet top-1";
      fill_family(dr, std::move(imagenet_points), std::move(imagenet_controls), gap_of, d.metric);
    } else if (has_upstream) {
      dr.family = "upstream";
      fill_family(dr, std::move(upstream_points), std::move(other_controls), gap_of, d.metric);
    } else {
      fill_family(dr, std::move(imagenet_points), std::move(imagenet_controls), gap_of, d.metric);
    }
    // Augmentation deltas per recipe.
    for (const auto& recipe : recipes) {
      if (recipe == "none" || !recipes.count("none")) continue;
      AugmentationDelta a;
      a.recipe = recipe;
      a.dataset = d.name;
      std::vector<double> deltas;
      for (const auto& [model, list] : by_model) {
        std::vector<const store::TrialRow*> with, without;
        for (const auto* t : list) {
          if (t->augmentation == recipe) with.push_back(t);
          else if (t->augmentation == "none") without.push_back(t);
        }
        const Candidate cw = select(with, by_key, d.metric, by_test), cn = select(without, by_key, d.metric, by_test);
        if (cw.trial && cn.trial && std::isfinite(cw.test) && std::isfinite(cn.test))
          deltas.push_back((cw.test - cn.test) * 100.0 * (lower_is_better(d.metric) ? -1 : 1));
      }
      a.models = static_cast<int>(deltas.size());
      if (!deltas.empty()) {
        a.mean_delta_pp = std::accumulate(deltas.begin(), deltas.end(), 0.0) / static_cast<double>(deltas.size());
        a.min_delta_pp = *std::min_element(deltas.begin(), deltas.end());
        a.max_delta_pp = *std::max_element(deltas.begin(), deltas.end());
      }
      s.augmentation.push_back(a);
    }
    s.datasets.push_back(std::move(dr));
  }
  if (!upstream_family.empty()) s.x_label = "ImageNet top-1";  // the leading family's; the others carry their own
  for (auto& up : upstream_family) s.datasets.push_back(std::move(up));
  describe_weights(s, has_upstream);
  return s;
}

Study from_csv(const std::string& path, const Options& o) {
  std::ifstream in(path);
  if (!in) throw Error::input(path + ": cannot open");
  Study s;
  s.source = path;
  s.selection = "as given (CSV: one row per model and dataset, replicates averaged)";
  std::string line;
  int lineno = 0;
  std::vector<std::string> header;
  struct Row {
    std::string model, dataset;
    double top1, value;
    int64_t n_test;
    int line;
  };
  std::vector<Row> rows;
  while (std::getline(in, line)) {
    ++lineno;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    std::vector<std::string> f(1);
    for (char ch : line) {  // keeps a trailing empty field ("a,60,d,0.5," has an empty n_test)
      if (ch == ',') f.emplace_back();
      else f.back().push_back(ch);
    }
    if (header.empty()) {
      header = f;
      const bool ok = (f.size() == 4 || f.size() == 5) && f[0] == "model" && f[1] == "imagenet_top1" &&
                      f[2] == "dataset" && f[3] == "value" && (f.size() == 4 || f[4] == "n_test");
      if (!ok) throw Error::input(path + ":1: expected the header model,imagenet_top1,dataset,value[,n_test]");
      continue;
    }
    if (f.size() != header.size())
      throw Error::input(fmt::format("{}:{}: expected {} fields, got {}", path, lineno, header.size(), f.size()));
    Row r;
    r.model = f[0];
    r.dataset = f[2];
    r.line = lineno;
    try {
      size_t u1 = 0, u2 = 0;
      r.top1 = std::stod(f[1], &u1);
      r.value = std::stod(f[3], &u2);
      if (u1 != f[1].size() || u2 != f[3].size()) throw std::invalid_argument("");
      r.n_test = f.size() == 5 && !f[4].empty() ? std::stoll(f[4]) : 0;
    } catch (const std::exception&) {
      throw Error::input(fmt::format("{}:{}: imagenet_top1 and value must be numbers (n_test an integer): '{}'", path,
                                     lineno, line));
    }
    if (!(r.top1 > 0 && r.top1 <= 100))
      throw Error::input(fmt::format("{}:{}: imagenet_top1 {} is not a percentage in (0, 100]", path, lineno, r.top1));
    if (!std::isfinite(r.value)) throw Error::input(fmt::format("{}:{}: value is not finite", path, lineno));
    rows.push_back(r);
  }
  if (rows.empty()) throw Error::input(path + ": no rows");
  std::vector<std::string> order;
  for (const auto& r : rows)
    if (std::find(order.begin(), order.end(), r.dataset) == order.end()) order.push_back(r.dataset);
  for (const auto& name : order) {
    DatasetResult dr;
    dr.name = name;
    dr.metric = "value";
    double max_abs = 0;
    for (const auto& r : rows)
      if (r.dataset == name) max_abs = std::max(max_abs, std::abs(r.value));
    const double scale = max_abs > 1.0 ? 0.01 : 1.0;
    if (scale != 1.0) dr.notes.push_back("values read as percent (one exceeds 1)");
    std::map<std::string, std::vector<const Row*>> by_model;
    for (const auto& r : rows)
      if (r.dataset == name) by_model[r.model].push_back(&r);
    for (const auto& [model, list] : by_model) {
      Point p;
      p.model = model;
      p.top1 = list.front()->top1;
      std::vector<double> v;
      for (const auto* r : list) {
        if (r->top1 != p.top1)
          throw Error::input(fmt::format("{}:{}: model {} has ImageNet top-1 {} here and {} on line {}", path, r->line,
                                         model, r->top1, p.top1, list.front()->line));
        v.push_back(r->value * scale);
      }
      p.seeds = static_cast<int>(v.size());
      p.value = std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size());
      p.n_test = list.front()->n_test;
      if (v.size() >= 2) {
        std::tie(p.lo, p.hi) = mean_interval(v, o.level);
        p.interval = fmt::format("t-interval over {} replicates", v.size());
      } else if (p.n_test > 0 && p.value >= 0 && p.value <= 1) {
        std::tie(p.lo, p.hi) =
            clopper_pearson(static_cast<int64_t>(std::llround(p.value * static_cast<double>(p.n_test))), p.n_test, o.level);
        p.interval = fmt::format("Clopper–Pearson, n = {}", p.n_test);
      }
      dr.points.push_back(p);
    }
    std::sort(dr.points.begin(), dr.points.end(), [](const Point& a, const Point& b) { return a.top1 < b.top1; });
    s.datasets.push_back(std::move(dr));
  }
  return s;
}

void compute(Study& s, const Options& o) {
  s.resamples = o.resamples;
  s.seed = o.seed;
  s.level = o.level;
  // z-scored performance per dataset and model, for ΔR².
  std::map<std::string, std::map<std::string, double>> z;
  for (const auto& d : s.datasets) {
    std::vector<double> v;
    for (const auto& p : d.points) v.push_back(p.value);
    if (v.size() < 2) continue;
    const double m = std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size());
    double ss = 0;
    for (double x : v) ss += (x - m) * (x - m);
    const double sd = std::sqrt(ss / static_cast<double>(v.size() - 1));
    if (!(sd > 0)) continue;
    for (const auto& p : d.points) z[d.name][p.model] = (p.value - m) / sd * (lower_is_better(d.metric) ? -1 : 1);
  }
  for (size_t di = 0; di < s.datasets.size(); ++di) {
    auto& d = s.datasets[di];
    if (d.points.size() < 3) {
      d.notes.push_back(fmt::format("{} model(s) with a result: the statistics need at least 3", d.points.size()));
      continue;
    }
    std::vector<double> x, y;
    for (const auto& p : d.points) x.push_back(p.top1), y.push_back(p.value * 100.0);
    if (std::all_of(y.begin(), y.end(), [&](double v) { return v == y.front(); })) {
      d.notes.push_back("the metric is the same for every model: correlations and the fit are undefined");
      continue;
    }
    if (std::all_of(x.begin(), x.end(), [&](double v) { return v == x.front(); })) {
      d.notes.push_back("every model has the same ImageNet top-1: nothing to relate");
      continue;
    }
    d.has_stats = true;
    d.unreliable = d.points.size() < kReliableModels;
    if (d.unreliable)
      d.notes.push_back(fmt::format("UNRELIABLE: the bootstrap over models resamples only {} model(s) (fewer than {}): "
                                    "its intervals and band are not to be trusted", d.points.size(), kReliableModels));
    d.pearson = pearson(x, y);
    d.spearman = spearman(x, y);
    d.kendall = kendall(x, y);
    d.fit = ols(x, y);
    const bool proportion = proportion_metric(d.metric);
    const bool in_range = std::all_of(d.points.begin(), d.points.end(), [](const Point& p) { return p.value > 0 && p.value < 1; });
    if (!proportion)
      d.notes.push_back("no logit-scale fit: " + d.metric + " is not a proportion (it can be 0 or negative)");
    else if (!in_range)
      d.notes.push_back("no logit-scale fit: a value is 0 or 1 (logit undefined)");
    else {
      d.logit_ok = true;
      std::vector<double> lx, ly;
      for (const auto& p : d.points) lx.push_back(logit(p.top1 / 100.0)), ly.push_back(logit(p.value));
      d.logit_fit = ols(lx, ly);
    }
    const double lo = *std::min_element(x.begin(), x.end()), hi = *std::max_element(x.begin(), x.end());
    for (int k = 0; k <= 48; ++k) d.band_x.push_back(lo - 1 + (hi - lo + 2) * k / 48.0);
    BootstrapOptions bo;
    bo.resamples = o.resamples;
    bo.seed = o.seed + di * 7919;
    bo.level = o.level;
    bo.band_x = d.band_x;
    bo.logit = d.logit_ok;
    d.boot = bootstrap(x, y, bo);
    // The band lives in the metric's range (0–100 % for proportions, −100–100 for kappa): an interval of a
    // prediction outside it is clipped, not drawn below 0 %.
    const auto [ylo, yhi] = metric_range_pp(d.metric);
    for (auto& b : d.boot.band) b.lo = std::clamp(b.lo, ylo, yhi), b.hi = std::clamp(b.hi, ylo, yhi);
    if (d.boot.undefined > 0)
      d.notes.push_back(fmt::format("{} of {} bootstrap resamples had an undefined statistic (e.g. one distinct "
                                    "model) and were left out of the intervals", d.boot.undefined, d.boot.resamples));
    // ΔR²: the model's mean z-scored performance on the other datasets.
    std::vector<double> xx, zz, yy;
    for (const auto& p : d.points) {
      double sum = 0;
      int count = 0;
      for (const auto& [other, zs] : z)
        if (other != d.name)
          if (auto it = zs.find(p.model); it != zs.end()) sum += it->second, ++count;
      if (count == 0) continue;
      xx.push_back(p.top1), zz.push_back(sum / count), yy.push_back(p.value * 100.0);
    }
    if (xx.size() >= 4) {
      const double r1 = ols(xx, yy).r2;
      d.r2_with_others = r2_two(xx, zz, yy);
      d.delta_r2 = d.r2_with_others - r1;
      d.delta_r2_ci = bootstrap_delta_r2(xx, zz, yy, o.resamples, o.seed + di * 104729, o.level);
    } else if (s.datasets.size() > 1) {
      d.notes.push_back("ΔR² needs at least 4 models with results on another dataset");
    }
  }
}

}  // namespace xfer::analysis
