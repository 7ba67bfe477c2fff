// `xfer status FILE`: a sweep's progress from the results file alone — usable over SSH while the job writes.
#include <memory>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <map>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <CLI/CLI.hpp>

#include "commands.hpp"
#include "terminal.hpp"
#include "xfer/core/error.hpp"
#include "xfer/spec/spec.hpp"
#include "xfer/store/store.hpp"

namespace xfer::app {

namespace {
std::string hours(double h) {
  if (!std::isfinite(h)) return "–";
  if (h < 1) return fmt::format("{:.0f} min", h * 60);
  return fmt::format("{:.1f} h", h);
}
}  // namespace

int status(const StatusOptions& given) {
  SafeTerminal terminal;  // values from the file never reach the terminal as control sequences
  StatusOptions o = given;
  // A spec names its results file: `xfer status spec.toml` is what users type.
  if (std::filesystem::path(o.results).extension() == ".toml") {
    const auto spec = spec::load(o.results);
    if (!spec.study.results.resolved())
      throw Error::input(o.results + ": results \"" + spec.study.results.raw + "\" names ${" +
                         spec.study.results.unset_var + "}, which is unset");
    o.results = spec.study.results.path;
    if (!std::filesystem::exists(o.results))
      throw Error::input(given.results + ": its results file " + o.results + " does not exist yet (nothing has run)");
  }
  const auto results = store::Results::open_existing(o.results);
  // Every column, so that each row's checksums can be checked: a damaged row is listed as such, not shown as data.
  std::vector<store::TrialRow> trials, damaged;
  for (auto& t : results.trials()) (t.damage.empty() ? trials : damaged).push_back(std::move(t));
  const auto runs = results.runs();
  // The rule `xfer run` takes a lock over by: a lock whose pid is dead on this host (or silent 15 min) is stale.
  const auto lock = store::WriterLock::inspect(o.results);
  const bool writer = lock.holder == store::WriterLock::Holder::alive;
  static const std::vector<std::string> kStatuses = {"done", "running", "pending", "failed", "diverged", "oom",
                                                     "interrupted"};
  std::map<std::string, size_t> total;
  struct Cell {
    std::map<std::string, size_t> n;
  };
  std::map<std::pair<std::string, std::string>, Cell> cells;
  std::vector<std::string> model_order, dataset_order;
  int64_t epochs_done = 0;
  double seconds = 0, rank_seconds = 0, done_cost = 0, done_seconds = 0, left_cost = 0;
  std::map<std::string, std::vector<std::string>> failures;  // message → keys
  for (const auto& t : trials) {
    total[t.status]++;
    epochs_done += t.epochs_done;
    auto& c = cells[{t.model, t.dataset}];
    c.n[t.status]++;
    if (std::find(model_order.begin(), model_order.end(), t.model) == model_order.end()) model_order.push_back(t.model);
    if (std::find(dataset_order.begin(), dataset_order.end(), t.dataset) == dataset_order.end()) dataset_order.push_back(t.dataset);
    seconds += t.seconds;
    rank_seconds += t.seconds * std::max(1, t.group_size);
    if (t.status == "done" || t.status == "diverged") {
      done_cost += t.cost_gflop;
      done_seconds += t.seconds * std::max(1, t.group_size);
    } else {
      left_cost += t.cost_gflop;
    }
    if (t.status == "failed" || t.status == "oom") {
      std::string m = t.message.substr(0, 120);
      failures[m.empty() ? "(no message)" : m].push_back(t.key);
    }
  }
  const int ranks = runs.empty() ? 1 : std::max(1, runs.back().ranks);
  const double eta_h = done_cost > 0 ? left_cost * (done_seconds / done_cost) / ranks / 3600 : NAN;
  const bool orphaned = total["running"] > 0 && !writer;
  // A damaged file is not a healthy one: status still reports the rest, then exits 2 — the status `xfer run` and
  // every other refusal of a damaged results file exit with, so a job script sees one code for "fix the file".
  const int rc = damaged.empty() ? exit_status::ok : exit_status::input;
  auto damage_line = [](const store::TrialRow& t) {
    return store::describe_row(t) + ": corrupted (checksum mismatch: " + t.damage + ")";
  };

  if (o.json) {
    nlohmann::ordered_json j;
    j["results"] = o.results;
    j["total"] = trials.size();
    for (const auto& s : kStatuses) j[s] = total[s];
    j["epochs_done"] = epochs_done;  // summed over trials: a job script's measure of progress
    j["writer_active"] = writer;
    j["stale_lock"] = lock.holder == store::WriterLock::Holder::stale;
    j["corrupted"] = nlohmann::json::array();
    for (const auto& t : damaged)
      j["corrupted"].push_back({{"row", t.row_index}, {"message", damage_line(t)}});
    j["hours_spent"] = seconds / 3600;
    j["rank_hours_spent"] = rank_seconds / 3600;
    j["eta_hours"] = std::isfinite(eta_h) ? nlohmann::json(eta_h) : nlohmann::json(nullptr);
    j["by_model_dataset"] = nlohmann::json::array();
    for (const auto& [k, c] : cells) {
      nlohmann::ordered_json cj{{"model", k.first}, {"dataset", k.second}};
      for (const auto& s : kStatuses) cj[s] = c.n.count(s) ? c.n.at(s) : 0;
      j["by_model_dataset"].push_back(cj);
    }
    j["failures"] = nlohmann::json::array();
    for (const auto& [m, keys] : failures) j["failures"].push_back({{"message", m}, {"count", keys.size()}, {"keys", keys}});
    if (o.trials) {
      j["trials"] = nlohmann::json::array();
      for (const auto& t : trials)
        j["trials"].push_back({{"key", t.key}, {"model", t.model}, {"dataset", t.dataset}, {"status", t.status},
                               {"attempts", t.attempts}, {"epochs_done", t.epochs_done}, {"epochs", t.epochs},
                               {"val_metric", std::isfinite(t.val_metric) ? nlohmann::json(t.val_metric) : nlohmann::json(nullptr)},
                               {"test_metric", std::isfinite(t.test_metric) ? nlohmann::json(t.test_metric) : nlohmann::json(nullptr)},
                               {"message", t.message}});
    }
    std::cout << j.dump(2) << "\n";
    return rc;
  }

  std::cout << fmt::format("{}: {} trials — {} done, {} running, {} pending, {} failed, {} diverged, {} oom, {} interrupted\n",
                           o.results, trials.size(), total["done"], total["running"], total["pending"], total["failed"],
                           total["diverged"], total["oom"], total["interrupted"]);
  std::cout << fmt::format("time spent: {} wall ({} rank-time); estimated remaining: {} on {} rank(s)\n", hours(seconds / 3600),
                           hours(rank_seconds / 3600), hours(eta_h), ranks);
  if (lock.holder == store::WriterLock::Holder::stale)
    std::cout << "no xfer run holds the file: its lock is stale (" << lock.who << "); the next run takes it over\n";
  std::cout << (writer ? "an xfer run holds the file now (" + lock.who + ")\n"
                       : orphaned ? "no xfer run holds the file: 'running' trials were orphaned by a stopped job and "
                                    "will resume on the next run\n"
                       : lock.holder == store::WriterLock::Holder::stale ? ""
                                  : "no xfer run holds the file\n");
  if (!damaged.empty()) {
    std::cout << fmt::format("\n{} row(s) of /trials are corrupted and left out of every count below:\n",
                             damaged.size());
    for (const auto& t : damaged) std::cout << "  " << damage_line(t) << "\n";
  }
  size_t mw = 5, dw = 7;
  for (const auto& m : model_order) mw = std::max(mw, m.size());
  for (const auto& d : dataset_order) dw = std::max(dw, d.size());
  std::cout << fmt::format("\n{:<{}} {:<{}} {:>6} {:>7} {:>7} {:>6} {:>8} {:>4} {:>11}\n", "model", mw, "dataset", dw,
                           "done", "running", "pending", "failed", "diverged", "oom", "interrupted");
  for (const auto& m : model_order)
    for (const auto& d : dataset_order) {
      auto it = cells.find({m, d});
      if (it == cells.end()) continue;
      auto n = [&](const char* s) { return it->second.n.count(s) ? it->second.n.at(s) : size_t(0); };
      std::cout << fmt::format("{:<{}} {:<{}} {:>6} {:>7} {:>7} {:>6} {:>8} {:>4} {:>11}\n", m, mw, d, dw, n("done"),
                               n("running"), n("pending"), n("failed"), n("diverged"), n("oom"), n("interrupted"));
    }
  if (!failures.empty()) {
    std::cout << "\nfailures:\n";
    for (const auto& [m, keys] : failures)
      std::cout << fmt::format("  {}× {}  (e.g. {})\n", keys.size(), m, keys.front());
  }
  if (o.trials) {
    std::cout << "\n";
    for (const auto& t : trials)
      std::cout << fmt::format("{} {:<{}} {:<{}} {:<11} epochs {}/{} val {:.4g} test {:.4g} {}\n", t.key, t.model, mw,
                               t.dataset, dw, t.status, t.epochs_done, t.epochs, t.val_metric, t.test_metric, t.message);
    for (const auto& t : damaged) std::cout << damage_line(t) << "\n";
  }
  if (!damaged.empty())
    std::cerr << "xfer: error: " << o.results << ": " << damaged.size()
              << " corrupted row(s) in /trials (listed above); `xfer run` refuses the file and says how to recover\n";
  return rc;
}

Command status_command(CLI::App& cli) {
  auto o = std::make_shared<StatusOptions>();
  auto* sub = cli.add_subcommand("status", "Progress of a sweep, from its results file alone");
  sub->add_option("results", o->results, "results file (HDF5), or the spec that names it")->required();
  sub->add_flag("--json", o->json, "machine-readable");
  sub->add_flag("--trials", o->trials, "list every trial");
  return {sub, nullptr, [o](sweep::MpiRuntime*) { return status(*o); }};
}

}  // namespace xfer::app
