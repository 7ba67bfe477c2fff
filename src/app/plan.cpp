// `xfer plan SPEC`: what a spec will run, what it will cost, before a single GPU-hour is spent.
#include <memory>
#include <cmath>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <CLI/CLI.hpp>

#include "commands.hpp"
#include "xfer/core/error.hpp"
#include "xfer/data/dataset.hpp"
#include "xfer/grid/cost.hpp"
#include "xfer/grid/grid.hpp"
#include "xfer/spec/spec.hpp"
#include "xfer/sweep/dataset_sizes.hpp"

namespace xfer::app {

namespace {

struct Throughput {
  double images_per_s = 0;
  int input_size = 0;  // 0: measured at the trial's own size
};

std::map<std::string, Throughput> read_throughput(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw Error::input(path + ": cannot open the throughput table");
  std::map<std::string, Throughput> out;
  std::string line;
  int lineno = 0;
  bool has_size = false;
  while (std::getline(in, line)) {
    ++lineno;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || line[0] == '#') continue;
    std::vector<std::string> f;
    std::stringstream ss(line);
    for (std::string cell; std::getline(ss, cell, ',');) f.push_back(cell);
    if (out.empty() && lineno == 1 && !f.empty() && f[0] == "model") {
      if (f.size() < 2 || f[1] != "images_per_second" || (f.size() == 3 && f[2] != "input_size") || f.size() > 3)
        throw Error::input(path + ":1: expected the header model,images_per_second[,input_size]");
      has_size = f.size() == 3;
      continue;
    }
    if (lineno == 1) throw Error::input(path + ":1: expected the header model,images_per_second[,input_size]");
    if (f.size() != (has_size ? 3u : 2u))
      throw Error::input(fmt::format("{}:{}: expected {} fields, got {}", path, lineno, has_size ? 3 : 2, f.size()));
    Throughput t;
    try {
      size_t used = 0;
      t.images_per_s = std::stod(f[1], &used);
      if (used != f[1].size() || !(t.images_per_s > 0)) throw std::invalid_argument("");
      if (has_size) t.input_size = std::stoi(f[2]);
    } catch (const std::exception&) {
      throw Error::input(fmt::format("{}:{}: images_per_second must be a number > 0 (and input_size an integer), "
                                     "got '{}'", path, lineno, line));
    }
    out[f[0]] = t;
  }
  return out;
}

std::string fmt_cost(double gflop) {
  if (gflop >= 1e6) return fmt::format("{:.1f} PFLOP", gflop / 1e6);
  if (gflop >= 1e3) return fmt::format("{:.1f} TFLOP", gflop / 1e3);
  return fmt::format("{:.1f} GFLOP", gflop);
}

std::string fmt_num(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

}  // namespace

int plan(const PlanOptions& o) {
  const spec::Spec spec = grid::with_upstream(data::with_layouts_resolved(spec::load(o.spec)));
  // Counted and costed per (model, dataset) cell, never expanded: every trial of a cell costs the same, so a grid of
  // 10^7 trials plans in bounded memory. Above grid::kMaxTrials the spec is refused here, as `xfer run` would.
  const auto planned = grid::plan_cells(spec);
  const uint64_t n_trials = grid::count_trials(spec);
  std::map<std::string, Throughput> throughput;
  if (!o.throughput.empty()) throughput = read_throughput(o.throughput);

  // Datasets whose root is set are opened: their layout is checked (a wrong root fails here, on the login node,
  // not in the queue), and their real split sizes drive the cost. The others are planned from the catalog.
  std::vector<size_t> problems;
  const grid::CostModel costs(spec, sweep::dataset_sizes(spec, &problems));
  const std::vector<grid::DataSize>& sizes = costs.sizes();

  struct Cell {
    size_t trials = 0;
    int input_size = 0, epochs = 0, ranks = 0;
    double cost = 0, hours = 0;
  };
  std::map<std::pair<size_t, size_t>, Cell> cells;
  double total_cost = 0, total_hours = 0;
  bool hours_complete = !throughput.empty();
  std::set<std::string> missing_throughput;
  for (const auto& pc : planned) {
    const auto& t = pc.first;
    const auto& m = spec.models[t.model_index];
    const double trial_cost = costs.gflop(t);
    auto& c = cells[{t.model_index, t.dataset_index}];
    c.input_size = t.config.input_size;
    c.epochs = t.config.epochs;
    c.ranks = t.config.ranks_per_trial;
    bool timed = false;
    double h = 0;
    if (!throughput.empty()) {
      auto it = throughput.find(m.name);
      if (it == throughput.end()) {
        hours_complete = false;
        missing_throughput.insert(m.name);
      } else {
        double ips = it->second.images_per_s;
        if (it->second.input_size > 0) {
          const double r = static_cast<double>(it->second.input_size) / t.config.input_size;
          ips *= r * r;
        }
        h = costs.gpu_hours(t, ips);
        timed = true;
      }
    }
    // Summed trial by trial, in expansion order, as when every trial was costed: the same totals to the last bit.
    for (uint64_t k = 0; k < pc.trials; ++k) {
      c.trials++;
      c.cost += trial_cost;
      total_cost += trial_cost;
      if (timed) {
        c.hours += h;
        total_hours += h;
      }
    }
  }

  // Paths under unset variables were not checked; say so.
  std::vector<std::string> unchecked;
  auto note = [&](const spec::SpecPath& p, const std::string& what) {
    if (!p.raw.empty() && !p.resolved())
      unchecked.push_back(what + " \"" + p.raw + "\" (${" + p.unset_var + "} is unset)");
  };
  note(spec.study.results, "results");
  if (!spec.study.catalog.empty()) note(spec.study.models_dir, "models_dir");
  for (const auto& m : spec.models)
    if (spec.study.catalog.empty() || m.backbone.unset_var != spec.study.models_dir.unset_var)
      note(m.backbone, "backbone of " + m.name);
  for (const auto& d : spec.datasets) note(d.root, "root of " + d.name);
  std::set<std::string> unknown_sizes;
  for (size_t i = 0; i < spec.datasets.size(); ++i)
    if (sizes[i].source == "unknown") unknown_sizes.insert(spec.datasets[i].name);
  std::set<std::string> unknown_gmacs;
  for (size_t i = 0; i < spec.models.size(); ++i)
    if (!costs.gmacs_known(i)) unknown_gmacs.insert(spec.models[i].name);

  if (o.json) {
    nlohmann::ordered_json j;
    j["study"] = spec.study.name;
    j["spec"] = spec.path;
    j["results"] = spec.study.results.resolved() ? spec.study.results.path : spec.study.results.raw;
    j["selection"] = spec.study.selection;
    j["total_trials"] = n_trials;
    j["models"] = nlohmann::json::array();
    for (const auto& m : spec.models)
      j["models"].push_back({{"name", m.name}, {"imagenet_top1", m.imagenet_top1}, {"weights", m.weights},
                             {"backbone", m.backbone.resolved() ? m.backbone.path : m.backbone.raw},
                             {"gmacs", m.gmacs}});
    j["datasets"] = nlohmann::json::array();
    for (size_t i = 0; i < spec.datasets.size(); ++i) {
      const auto& d = spec.datasets[i];
      j["datasets"].push_back({{"name", d.name}, {"kind", d.kind}, {"metric", d.metric},
                               {"validation", spec.validation_of(d)},
                               {"root", d.root.resolved() ? d.root.path : d.root.raw},
                               {"n_train", sizes[i].n_train}, {"n_val", sizes[i].n_val},
                               {"n_test", sizes[i].n_test}, {"size_source", sizes[i].source},
                               {"problems", problems[i]}});
    }
    j["cells"] = nlohmann::json::array();
    for (const auto& [k, c] : cells) {
      nlohmann::ordered_json cj{{"model", spec.models[k.first].name}, {"dataset", spec.datasets[k.second].name},
                                {"trials", c.trials}, {"input_size", c.input_size}, {"epochs", c.epochs},
                                {"ranks_per_trial", c.ranks}, {"cost_gflop", c.cost}};
      cj["gpu_hours"] = throughput.empty() ? nlohmann::json(nullptr) : nlohmann::json(c.hours);
      j["cells"].push_back(cj);
    }
    j["total_cost_gflop"] = total_cost;
    j["gpu_hours"] = hours_complete ? nlohmann::json(total_hours) : nlohmann::json(nullptr);
    j["unchecked_paths"] = unchecked;
    j["unknown_sizes"] = unknown_sizes;
    j["unknown_gmacs"] = unknown_gmacs;
    j["missing_throughput"] = missing_throughput;
    if (!o.list) {
      std::cout << j.dump(2) << "\n";
      return 0;
    }
    // The trials are streamed, one at a time, as the last member "trials": the same text as dumping them with the
    // rest (indent 2), without holding them.
    std::string head = j.dump(2);  // "{\n  ...\n}"
    head.resize(head.size() - 2);
    std::cout << head << ",\n  \"trials\": [";
    bool any = false;
    grid::for_each_trial(spec, [&](const grid::Trial& trial) {
      const auto& t = trial.config;
      nlohmann::ordered_json tj{{"key", trial.key.str()}, {"model", t.model}, {"dataset", t.dataset},
                                      {"optimizer", name_str(t.optimizer)}, {"lr", t.lr}, {"weight_decay", t.weight_decay},
                                      {"wd_mode", name_str(t.wd_mode)}, {"augmentation", name_str(t.augmentation)},
                                      {"seed", t.seed}, {"epochs", t.epochs}, {"batch_size", t.batch_size},
                                      {"input_size", t.input_size}, {"ranks_per_trial", t.ranks_per_trial},
                                      {"cost_gflop", costs.gflop(trial)}};
      if (t.pretraining) tj["stage"] = "upstream";
      if (!t.upstream.empty()) tj["upstream"] = t.upstream;
      std::string text = tj.dump(2), indented = "    ";
      for (char ch : text) {
        indented += ch;
        if (ch == '\n') indented += "    ";
      }
      std::cout << (any ? ",\n" : "\n") << indented;
      any = true;
    });
    std::cout << (any ? "\n  ]" : "]") << "\n}\n";
    return 0;
  }

  std::cout << fmt::format("Study \"{}\" ({}): {} models × {} datasets → {} trials\n", spec.study.name, spec.path,
                           spec.models.size(), spec.datasets.size(), n_trials);
  for (const auto& u : spec.upstreams) {
    size_t n = 0;
    grid::for_each_trial(spec, [&](const grid::Trial& t) { n += t.config.pretraining && t.config.dataset == u.dataset; });
    std::cout << fmt::format("Upstream stage \"{}\": {} pre-training run(s) of {} on dataset {} (epochs {}); each "
                             "pre-trained backbone is fine-tuned on every other dataset, plotted at its measured "
                             "upstream top-1; downstream trials start once their upstream trial is done\n",
                             u.name, n, fmt::join(u.models, ", "), u.dataset, fmt::join(u.epochs, ", "));
  }
  std::cout << fmt::format("Results: {}\n",
                           spec.study.results.resolved() ? spec.study.results.path : spec.study.results.raw);
  std::cout << fmt::format("Selection: {}\n", spec.study.selection == "paper"
                                                  ? "paper (select and report on the same held-out set where a "
                                                    "dataset has no validation split — optimistic)"
                                                  : "holdout (validation carved from train; test untouched)");
  size_t mw = 5, dw = 7;
  for (const auto& m : spec.models) mw = std::max(mw, m.name.size());
  for (const auto& d : spec.datasets) dw = std::max(dw, d.name.size());
  std::cout << "\n";
  std::cout << fmt::format("{:<{}} {:<{}} {:>6} {:>5} {:>6} {:>5} {:>14} {:>6} {:>9}\n", "model", mw, "dataset", dw,
                           "trials", "S", "epochs", "ranks", "cost", "share", "GPU-h");
  for (const auto& [k, c] : cells) {
    std::string hours = throughput.empty() ? "-" : (missing_throughput.count(spec.models[k.first].name) ? "?"
                                                                                                       : fmt::format("{:.1f}", c.hours));
    std::cout << fmt::format("{:<{}} {:<{}} {:>6} {:>5} {:>6} {:>5} {:>14} {:>5.1f}% {:>9}\n", spec.models[k.first].name,
                             mw, spec.datasets[k.second].name, dw, c.trials, c.input_size, c.epochs, c.ranks, fmt_cost(c.cost),
                             total_cost > 0 ? 100.0 * c.cost / total_cost : 0.0, hours);
  }
  std::cout << fmt::format("\nTotal: {} trials, {} estimated compute", n_trials, fmt_cost(total_cost));
  if (hours_complete) std::cout << fmt::format(", {:.1f} GPU-hours", total_hours);
  else if (throughput.empty()) std::cout << " (GPU-hours: pass --throughput FILE)";
  std::cout << "\n";
  if (!missing_throughput.empty()) {
    std::cout << "No throughput for:";
    for (const auto& m : missing_throughput) std::cout << " " << m;
    std::cout << "\n";
  }
  if (!unknown_gmacs.empty()) {
    std::cout << fmt::format("Cost assumes {} GMAC/image for (set gmacs in [[model]]):", grid::CostModel::kUnknownGmacs);
    for (const auto& m : unknown_gmacs) std::cout << " " << m;
    std::cout << "\n";
  }
  if (!unknown_sizes.empty()) {
    std::cout << "Dataset size unknown, cost counted as 0 for:";
    for (const auto& d : unknown_sizes) std::cout << " " << d;
    std::cout << "\n";
  }
  for (size_t i = 0; i < spec.datasets.size(); ++i)
    if (problems[i] > 0)
      std::cout << fmt::format("Dataset {}: {} sample{} skipped (see `xfer splits --spec {} --dataset {}`)\n",
                               spec.datasets[i].name, problems[i], problems[i] == 1 ? "" : "s", spec.path,
                               spec.datasets[i].name);
  if (!unchecked.empty()) {
    std::cout << "\nNot checked (under unset variables; `xfer run` refuses them until they are set):\n";
    for (const auto& u : unchecked) std::cout << "  " << u << "\n";
  }
  if (o.list) {
    std::cout << "\n"
              << fmt::format("{:<16} {:<{}} {:<{}} {:<6} {:>8} {:>8} {:<14} {:>5} {:>12}\n", "key", "model", mw,
                             "dataset", dw, "opt", "lr", "wd", "augmentation", "seed", "cost");
    // Streamed: one trial at a time, none held.
    grid::for_each_trial(spec, [&](const grid::Trial& trial) {
      const auto& t = trial.config;
      std::cout << fmt::format("{:<16} {:<{}} {:<{}} {:<6} {:>8} {:>8} {:<14} {:>5} {:>12}\n", trial.key.str(),
                               t.model, mw, t.dataset, dw, name(t.optimizer), fmt_num(t.lr), fmt_num(t.weight_decay), name(t.augmentation),
                               t.seed, fmt_cost(costs.gflop(trial)));
    });
  }
  return 0;
}

Command plan_command(CLI::App& cli) {
  auto o = std::make_shared<PlanOptions>();
  auto* sub = cli.add_subcommand("plan", "Show what a spec will run: trials per model × dataset, cost, GPU-hours");
  sub->add_option("spec", o->spec, "experiment spec (TOML)")->required();
  sub->add_flag("--list", o->list, "print every trial with its key (streamed: any grid up to the ceiling of 10^7 trials)");
  sub->add_flag("--json", o->json, "machine-readable output on stdout");
  sub->add_option("--throughput", o->throughput,
                       "CSV with header model,images_per_second[,input_size]: training images/s per GPU, for "
                       "GPU-hour estimates");
  return {sub, nullptr, [o](sweep::MpiRuntime*) { return plan(*o); }};
}

}  // namespace xfer::app
