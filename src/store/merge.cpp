// `xfer merge`: shard files of a job array into one results file.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <map>
#include <set>

#include <fmt/format.h>

#include "xfer/core/digest.hpp"
#include "xfer/core/error.hpp"
#include "xfer/core/vocabulary.hpp"
#include "schema.hpp"
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

// The configuration the key stands for: the canonical text and every column written with the row (but
// ranks_per_trial, which is not part of the key, and the checksum). Two rows of one key that differ here are not
// the same trial, whatever their metrics say.
std::string configuration_difference(const TrialRow& a, const TrialRow& b) {
  for (const auto& c : schema::trials().columns()) {
    if (c.written != table::Written::once || c.checksum || c.name == "ranks_per_trial") continue;
    bool same = true;
    switch (c.type) {
      case table::Type::f64: same = same_number(c.get_f64(a), c.get_f64(b)); break;
      case table::Type::i64:
      case table::Type::i32:
      case table::Type::flag: same = c.get_int(a) == c.get_int(b); break;
      case table::Type::text:
      case table::Type::vtext: same = c.get_text(a) == c.get_text(b); break;
    }
    if (!same) return c.name;
  }
  return "";
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
  // The same study: same name, same spec text (else a warning), same splits.
  const std::string spec = in.front().spec_text();
  const std::string study = in.front().study();
  std::map<std::string, std::string> split_of;
  for (size_t i = 0; i < in.size(); ++i) {
    if (const std::string other = in[i].study(); other != study)
      throw Error::input(fmt::format("{}: holds study \"{}\", {} holds \"{}\"; shards of one study share its name — "
                                     "refusing to merge", shards[i], other, shards[0], study));
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
  // Damaged rows (checksum mismatch) are never merged: each is a conflict, and the merged file lacks the trial
  // unless another shard holds it intact (a rerun of the spec then runs it again).
  std::vector<std::pair<size_t, TrialRow>> damaged;
  for (size_t i = 0; i < in.size(); ++i)
    for (auto& t : in[i].trials()) {
      if (!t.damage.empty()) {
        damaged.emplace_back(i, std::move(t));
        continue;
      }
      const std::string key = t.key;  // before t is moved from
      auto it = chosen.find(key);
      if (it == chosen.end()) {
        order.push_back(key);
        chosen.emplace(key, std::make_pair(i, std::move(t)));
        continue;
      }
      auto& [from, kept] = it->second;
      const std::string differs = configuration_difference(kept, t);
      if (differs.empty() && same_result(kept, t)) {
        report.identical_duplicates++;
        continue;
      }
      // A more advanced state supersedes a less advanced one (pending < failed < interrupted < diverged < done):
      // that is the same trial further along, not a disagreement. Two different results at the same stage are.
      const int rank_new = progress_rank(t, shards[i]), rank_kept = progress_rank(kept, shards[from]);
      const bool replace = rank_new > rank_kept;
      if (differs.empty() && rank_new != rank_kept) {
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
      c.reason = differs.empty()
                     ? fmt::format("{}: {} with test {} / val {} in {}, but {} with test {} / val {} in {}", t.key,
                                   kept.status, kept.test_metric, kept.val_metric, shards[from], t.status,
                                   t.test_metric, t.val_metric, shards[i])
                     : fmt::format("{}: the configuration differs between {} and {} (column {}): not the same trial",
                                   t.key, shards[from], shards[i], differs);
      report.conflicts.push_back(c);
    }
  for (auto& [i, t] : damaged) {
    MergeConflict c;
    c.damaged = true;
    c.key = t.key;
    c.other = shards[i];
    c.other_status = t.status.substr(0, 24);
    c.other_test_metric = t.test_metric;
    c.other_val_metric = t.val_metric;
    const auto it = chosen.find(t.key);
    c.kept_from = it != chosen.end() ? shards[it->second.first] : "";
    c.kept_status = it != chosen.end() ? it->second.second.status : "";
    c.kept_test_metric = it != chosen.end() ? it->second.second.test_metric : std::nan("");
    c.kept_val_metric = it != chosen.end() ? it->second.second.val_metric : std::nan("");
    c.reason = fmt::format("{}: {} of /trials is corrupted (checksum mismatch: {}); {}", shards[i], describe_row(t),
                           t.damage,
                           it != chosen.end() ? "the intact row from " + shards[it->second.first] + " is kept"
                                              : "not merged — a rerun of the spec runs that trial again");
    if (std::all_of(c.key.begin(), c.key.end(), [](char ch) { return std::isxdigit(static_cast<unsigned char>(ch)); }) == false)
      c.key = "";
    report.conflicts.push_back(c);
  }
  // Write.
  Results res = Results::open_or_create(out, study, spec);
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
    std::vector<SpecRow> history;
    for (const auto& r : in)
      for (auto& h : r.specs()) history.push_back(std::move(h));
    res.add_specs(history);
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
      if (const auto it = chosen.find(c.key); it != chosen.end() && it->second.first == i) curves.push_back(std::move(c));
    res.put_curves(curves);
    std::vector<PredictionSet> preds;
    for (auto& p : in[i].all_predictions())
      if (const auto it = chosen.find(p.key); it != chosen.end() && it->second.first == i) preds.push_back(std::move(p));
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
