// `xfer merge`: shard files of a job array into one results file.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <set>

#include <fmt/format.h>

#include "xfer/core/digest.hpp"
#include "xfer/core/error.hpp"
#include "xfer/core/vocabulary.hpp"
#include "xfer/store/store.hpp"

namespace fs = std::filesystem;

namespace xfer::store {

namespace {

// How far along a trial is: done > diverged > interrupted/running > failed/oom > pending.
int progress_rank(const TrialRow& t, const std::string& shard) {
  switch (parse<TrialStatus>(t.status, shard + ": /trials, trial " + t.key + ", column status")) {
    case TrialStatus::done: return 5;
    case TrialStatus::diverged: return 4;
    case TrialStatus::interrupted:
    case TrialStatus::running: return 3;
    case TrialStatus::failed:
    case TrialStatus::oom: return 2;
    case TrialStatus::pending: return 1;
  }
  return 1;
}

bool same_number(double a, double b) { return (std::isnan(a) && std::isnan(b)) || a == b; }

bool same_result(const TrialRow& a, const TrialRow& b) {
  return a.status == b.status && a.best_epoch == b.best_epoch && same_number(a.val_metric, b.val_metric) &&
         same_number(a.test_metric, b.test_metric) && a.epochs_done == b.epochs_done;
}

}  // namespace

MergeReport merge(const std::string& out, const std::vector<std::string>& shards) {
  if (shards.empty()) throw Error::input("xfer merge: no shard files given");
  if (fs::exists(out)) throw Error::input(out + ": already exists; merge writes a new file (remove it or choose another name)");
  for (const auto& s : shards)
    if (fs::absolute(s) == fs::absolute(out)) throw Error::input(s + ": the output cannot also be an input");
  MergeReport report;
  std::vector<Results> in;
  for (const auto& s : shards) in.push_back(Results::open_existing(s));
  // The same study: same spec text, same splits.
  const std::string spec = in.front().spec_text();
  std::map<std::string, std::string> split_of;
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i].spec_text() != spec)
      report.warnings.push_back(shards[i] + " was run from a different spec than " + shards[0] +
                                " (the merged file keeps the first spec's text)");
    for (const auto& d : in[i].datasets()) {
      if (d.split_sha256.empty()) continue;
      auto [it, fresh] = split_of.emplace(d.name, d.split_sha256);
      if (!fresh && it->second != d.split_sha256)
        throw Error::input(fmt::format("{}: dataset {} was split differently (split sha256 {} vs {} in {}); shards "
                                       "of one study share their splits — refusing to merge", shards[i], d.name,
                                       d.split_sha256.substr(0, 12), it->second.substr(0, 12), shards[0]));
    }
  }
  // Each key once: the most advanced state wins; differing duplicates are conflicts.
  std::map<std::string, std::pair<size_t, TrialRow>> chosen;
  std::vector<std::string> order;
  for (size_t i = 0; i < in.size(); ++i)
    for (auto& t : in[i].trials()) {
      const std::string key = t.key;  // before t is moved from
      auto it = chosen.find(key);
      if (it == chosen.end()) {
        order.push_back(key);
        chosen.emplace(key, std::make_pair(i, std::move(t)));
        continue;
      }
      auto& [from, kept] = it->second;
      if (same_result(kept, t)) {
        report.identical_duplicates++;
        continue;
      }
      // A more advanced state supersedes a less advanced one (pending < failed < interrupted < diverged < done):
      // that is the same trial further along, not a disagreement. Two different results at the same stage are.
      const int rank_new = progress_rank(t, shards[i]), rank_kept = progress_rank(kept, shards[from]);
      const bool replace = rank_new > rank_kept;
      if (rank_new != rank_kept) {
        report.superseded++;
        if (replace) it->second = std::make_pair(i, std::move(t));
        continue;
      }
      MergeConflict c;
      c.key = t.key;
      c.kept_from = shards[from];
      c.other = shards[i];
      c.kept_status = kept.status;
      c.other_status = t.status;
      c.kept_test_metric = kept.test_metric;
      c.other_test_metric = t.test_metric;
      c.kept_val_metric = kept.val_metric;
      c.other_val_metric = t.val_metric;
      c.reason = fmt::format("{}: {} with test {} / val {} in {}, but {} with test {} / val {} in {}", t.key, kept.status,
                             kept.test_metric, kept.val_metric, shards[from], t.status, t.test_metric, t.val_metric,
                             shards[i]);
      report.conflicts.push_back(c);
    }
  // Write.
  Results res = Results::open_or_create(out, "merged", spec);
  {
    std::vector<ModelRow> models;
    std::vector<DatasetRow> datasets;
    std::set<std::string> seen_m, seen_d;
    for (const auto& r : in) {
      for (const auto& m : r.models())
        if (seen_m.insert(m.name).second) models.push_back(m);
      for (const auto& d : r.datasets())
        if (seen_d.insert(d.name).second) datasets.push_back(d);
    }
    res.write_study(spec, models, datasets);
    std::set<std::string> samples_done;
    for (const auto& r : in)
      for (const auto& d : r.datasets())
        if (samples_done.insert(d.name).second) {
          auto rows = r.samples(d.name);
          if (!rows.empty()) res.write_samples(d.name, rows);
        }
  }
  std::vector<TrialRow> rows;
  for (const auto& k : order) rows.push_back(chosen[k].second);
  res.add_trials(rows);
  report.trials = rows.size();
  // Curves and predictions of each key from the shard it was taken from.
  for (size_t i = 0; i < in.size(); ++i) {
    std::vector<CurveRow> curves;
    for (auto& c : in[i].curves())
      if (chosen[c.key].first == i) curves.push_back(std::move(c));
    res.put_curves(curves);
    std::vector<PredictionSet> preds;
    for (auto& p : in[i].all_predictions())
      if (chosen.count(p.key) && chosen[p.key].first == i) preds.push_back(std::move(p));
    res.put_predictions(preds);
    std::vector<ProblemRow> problems = in[i].problems();
    res.add_problems(problems);
    for (const auto& run : in[i].runs()) {
      RunRow r = run;
      r.end_reason += " [" + fs::path(shards[i]).filename().string() + "]";
      res.begin_run(r);
    }
  }
  auto prov = in.front().provenance();
  std::string list;
  for (const auto& s : shards) list += (list.empty() ? "" : " ") + s;
  prov["merged_from"] = list;
  prov["merged_utc"] = iso_utc(now_unix());
  prov["merge_conflicts"] = std::to_string(report.conflicts.size());
  res.write_provenance(prov);
  if (!report.conflicts.empty()) res.write_merge_conflicts(report.conflicts);
  return report;
}

}  // namespace xfer::store
