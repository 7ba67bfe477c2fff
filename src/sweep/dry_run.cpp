// `xfer run --dry-run`: the ledger's decisions against the results file as it is; no MPI, no lock, nothing written.
#include <iostream>
#include <map>
#include <unordered_map>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "study_setup.hpp"
#include "xfer/sweep/ledger.hpp"
#include "xfer/sweep/scheduler.hpp"

namespace fs = std::filesystem;

namespace xfer::sweep {

int dry_run(const RunOptions& o, bool json) {
  Study study = read_study(o.spec);
  const std::string path =
      results_path(o, o.results.empty() ? resolved_or_throw(study.spec.study.results, "results") : o.results);
  keep_recorded_upstream_names(study, upstream_ledger(study, path));
  const auto& trials = study.trials;
  std::vector<bool> in_shard(trials.size(), o.shards <= 1);
  if (o.shards > 1)
    for (size_t i : shard_of(trial_costs(study), o.shard, o.shards)) in_shard[i] = true;
  struct Entry {
    std::optional<TrialStatus> status;
    int attempts = 0;
  };
  std::unordered_map<std::string, Entry> existing;
  if (fs::exists(path)) {
    const auto results = store::Results::open_existing(path);
    // What `xfer run` would refuse, refused here too (the splits are compared by the run, which opens the datasets).
    results.check_run(study.spec.study.name, study.spec.text, {}, o.extend);
    const auto ledger = results.ledger();
    existing.reserve(ledger.size());
    for (const auto& e : ledger) existing[e.key] = {try_parse<TrialStatus>(e.status), static_cast<int>(e.attempts)};
  }
  std::map<std::string, size_t> counts;
  std::vector<std::pair<size_t, Action>> would_run;
  for (size_t i = 0; i < trials.size(); ++i) {
    if (!in_shard[i]) continue;
    auto it = existing.find(trials[i].key.str());
    const Action a = it == existing.end() ? decide(std::nullopt, 0, study.spec.study.max_attempts)
                                          : decide(it->second.status, it->second.attempts, study.spec.study.max_attempts);
    counts[std::string(action_name(a))]++;
    if (runs(a)) would_run.emplace_back(i, a);
  }
  auto entry = [&](const std::pair<size_t, Action>& w) {
    const auto& t = trials[w.first];
    return nlohmann::ordered_json{{"key", t.key.str()}, {"model", t.config.model}, {"dataset", t.config.dataset},
                                  {"optimizer", name_str(t.config.optimizer)}, {"lr", t.config.lr},
                                  {"weight_decay", t.config.weight_decay}, {"seed", t.config.seed},
                                  {"action", action_name(w.second)}};
  };
  if (json) {
    nlohmann::ordered_json list = nlohmann::json::array();
    for (const auto& w : would_run) list.push_back(entry(w));
    nlohmann::ordered_json j{{"results", path}, {"total", trials.size()}, {"counts", counts}, {"would_run", list}};
    std::cout << j.dump(2) << "\n";
    return 0;
  }
  std::cout << fmt::format("{} ({}): {} trials\n", o.spec, path, trials.size());
  for (const auto& [k, n] : counts) std::cout << fmt::format("  {:<28} {}\n", k, n);
  std::cout << fmt::format("would run {} trial(s){}:\n", would_run.size(),
                           would_run.size() > 50 ? " (the first 50; --json lists all)" : "");
  for (size_t i = 0; i < would_run.size() && i < 50; ++i) {
    const auto& t = trials[would_run[i].first];
    std::cout << fmt::format("  {} {:<24} {:<14} {} lr={} wd={} seed={}  [{}]\n", t.key.str(), t.config.model,
                             t.config.dataset, name(t.config.optimizer), t.config.lr, t.config.weight_decay, t.config.seed,
                             action_name(would_run[i].second));
  }
  return 0;
}

}  // namespace xfer::sweep
