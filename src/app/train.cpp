// `xfer train SPEC --trial KEY`: one trial, standalone, without the sweep or the results file — to debug a failing
// trial, to time a model, or to check xfer against a PyTorch script.
#include <memory>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <iostream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>

#include "commands.hpp"
#include "validators.hpp"
#include "xfer/core/error.hpp"
#include "xfer/core/stop.hpp"
#include "xfer/data/dataset.hpp"
#include "xfer/grid/grid.hpp"
#include "xfer/metrics/metrics.hpp"
#include "xfer/spec/spec.hpp"
#include "xfer/sweep/mpi.hpp"
#include "xfer/train/trial.hpp"

namespace xfer::app {

namespace {

nlohmann::json number(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); }

void write_predictions(const data::Dataset& d, const train::Predictions& p, const std::string& path) {
  std::ofstream out(path);
  out << "sample_id";
  for (int c = 0; c < p.classes; ++c) out << ",p" << c;
  out << "\n";
  for (size_t i = 0; i < p.samples.size(); ++i) {
    out << d.samples[static_cast<size_t>(p.samples[i])].id;
    for (int c = 0; c < p.classes; ++c) out << "," << fmt::format("{:.9g}", p.scores[i * p.classes + c]);
    out << "\n";
  }
}

}  // namespace

const grid::Trial& find_trial(const std::vector<grid::Trial>& trials, const std::string& key, int index,
                              const std::string& spec_path) {
  if (index >= 0) {
    if (index >= static_cast<int>(trials.size()))
      throw Error::input(fmt::format("--index {}: {} has {} trials", index, spec_path, trials.size()));
    return trials[static_cast<size_t>(index)];
  }
  const grid::Trial* found = nullptr;
  for (const auto& t : trials)
    if (t.key.str().rfind(key, 0) == 0) {
      if (found) throw Error::input("--trial " + key + ": more than one trial key starts with it; give more digits");
      found = &t;
    }
  if (!found) throw Error::input("--trial " + key + ": no trial of " + spec_path + " has that key (xfer plan --list)");
  return *found;
}

int train(const TrainOptions& o, sweep::MpiRuntime* mpi) {
  metrics::Runtime kokkos;
  std::unique_ptr<sweep::MpiGroup> group;
  if (mpi && mpi->size() > 1) group = sweep::MpiGroup::world();
  const bool root = !mpi || mpi->rank() == 0;
  install_default_stop_handlers();
  const spec::Spec spec = grid::with_upstream(data::with_layouts_resolved(spec::load(o.spec)));
  const auto trials = grid::expand(spec);
  const grid::Trial& trial = find_trial(trials, o.trial, o.index, o.spec);
  // Every rank must train this trial the same way before the first collective (an MPMD launch can differ).
  if (group)
    group->agree({{"trial", trial.key.str()},
                  {"--device", o.device.substr(0, o.device.find(':'))},
                  {"--gradient-exchange", o.gradient_exchange},
                  {"--input-pipeline", o.input_pipeline},
                  {"--deterministic-input", o.deterministic_input ? "on" : "off"},
                  {"--micro-batches", std::to_string(o.micro_batches)}});
  const data::Dataset d = data::open(spec, spec.datasets[trial.dataset_index]);
  train::Environment env = train::environment_for(spec, trial);
  if (!o.checkpoint_dir.empty()) env.checkpoint_dir = (std::filesystem::path(o.checkpoint_dir) / trial.key.str()).string();
  env.device = o.device;
  env.threads = o.threads;
  env.stop = &stop_requested();
  env.deterministic_input = o.deterministic_input;
  env.head_init = o.head_init;
  env.step_log = o.step_log;
  env.micro_batches = o.micro_batches;
  env.gradient_exchange = parse<ExchangeMode>(o.gradient_exchange, "--gradient-exchange");
  env.input_pipeline = parse<InputPipeline>(o.input_pipeline, "--input-pipeline");
  if (o.keep_checkpoints) env.remove_checkpoints = false;
  env.group = group.get();
  if (mpi) env.local_rank = mpi->local_rank();
  env.on_epoch = [&](const train::EpochRecord& r) {
    spdlog::info("trial {} epoch {}/{}: train loss {:.4f}, val {} {:.4f}, test {:.4f}, lr {:.3g}, {:.1f} img/s",
                 trial.key.str(), r.epoch + 1, trial.config.epochs, r.train_loss, name(trial.config.metric), r.val_metric,
                 r.test_metric, r.lr, r.images_per_second);
  };
  spdlog::info("trial {}: {} on {} ({} lr {} wd {}), {} epochs", trial.key.str(), trial.config.model,
               trial.config.dataset, name(trial.config.optimizer), trial.config.lr, trial.config.weight_decay,
               trial.config.epochs);
  const train::Result r = train::run(trial.config, d, env);
  if (!root) return r.status == train::Status::failed ? 1 : 0;
  if (!o.predictions.empty()) {
    std::filesystem::create_directories(o.predictions);
    if (!r.val.empty()) write_predictions(d, r.val, o.predictions + "/val.csv");
    if (!r.test.empty()) write_predictions(d, r.test, o.predictions + "/test.csv");
  }
  if (o.json) {
    nlohmann::ordered_json j{{"key", trial.key.str()}, {"status", train::status_name(r.status)},
                             {"message", r.message}, {"best_epoch", r.best_epoch}, {"best_val", number(r.best_val)},
                             {"test_at_best", number(r.test_at_best)}, {"resumed_from_epoch", r.resumed_from_epoch},
                             {"micro_batches", r.micro_batches}, {"device", r.device}, {"threads", r.threads},
                             {"seconds", r.seconds}, {"parameters", r.parameters}, {"feature_dim", r.feature_dim},
                             {"data_problems", r.data_problems.size()}};
    j["epochs"] = nlohmann::json::array();
    for (const auto& e : r.epochs)
      j["epochs"].push_back({{"epoch", e.epoch}, {"lr", e.lr}, {"train_loss", number(e.train_loss)},
                             {"val_metric", number(e.val_metric)}, {"test_metric", number(e.test_metric)},
                             {"val_loss", number(e.val_loss)}, {"images_per_second", e.images_per_second},
                             {"peak_memory_bytes", e.peak_memory_bytes}, {"note", e.note}});
    std::cout << j.dump(2) << std::endl;
  } else {
    std::cout << fmt::format("trial {}: {}{}\n", trial.key.str(), train::status_name(r.status),
                             r.message.empty() ? "" : " — " + r.message);
    if (r.best_epoch >= 0)
      std::cout << fmt::format("best epoch {}: validation {} {:.6g}, test {:.6g}\n", r.best_epoch + 1,
                               name(trial.config.metric), r.best_val, r.test_at_best);
  }
  // Interrupted (a signal): exit 0 after the checkpoint, as a preempted job should.
  return r.status == train::Status::failed ? 1 : 0;
}

Command train_command(CLI::App& cli) {
  auto o = std::make_shared<TrainOptions>();
  auto* sub = cli.add_subcommand("train", "Run one trial of a spec standalone (no results file): debug, time, check");
  sub->add_option("spec", o->spec, "experiment spec (TOML)")->required();
  auto* trial_opt = sub->add_option("--trial", o->trial, "trial key, or a unique prefix of it (xfer plan --list)");
  auto* index_opt = sub->add_option("--index", o->index, "the trial's position in the expansion");
  trial_opt->excludes(index_opt);
  sub->add_option("--device", o->device, "auto | cpu | cuda | cuda:N");
  sub->add_option("--threads", o->threads, "torch threads (default: from the allocation)")->check(at_least(1));
  sub->add_option("--checkpoint-dir", o->checkpoint_dir, "default: the spec's checkpoint_dir");
  sub->add_option("--predictions", o->predictions, "write val.csv / test.csv of the selected epoch here");
  sub->add_flag("--json", o->json, "the result as JSON on stdout");
  sub->add_flag("--deterministic-input", o->deterministic_input,
                      "reproducibility checks: train on the eval transform, no shuffle");
  sub->add_option("--head-init", o->head_init, "TorchScript nn.Linear to initialise the head from");
  sub->add_option("--step-log", o->step_log, "append epoch,step,lr,loss,samples per step to this CSV");
  sub->add_option("--micro-batches", o->micro_batches, "split each batch in N micro-batches (accumulate)")
      ->check(CLI::PositiveNumber);
  sub->add_option("--gradient-exchange", o->gradient_exchange,
                  "data-parallel gradient sums: overlap (buckets during backward; default) | bucketed | flat")
      ->check(CLI::IsMember(words<ExchangeMode>()));
  sub->add_option("--input-pipeline", o->input_pipeline,
                  "host (decode and augment on CPU threads; default) | device (decoded once into a cache, crops on the device)")
      ->check(CLI::IsMember(words<InputPipeline>()));
  sub->add_flag("--keep-checkpoints", o->keep_checkpoints,
                      "leave the checkpoints in place when the trial ends (a rerun then reports from them)");
  return {sub, [] { return true; }, [o](sweep::MpiRuntime* mpi) {
            if (o->trial.empty() && o->index < 0) throw Error::input("xfer train: give --trial KEY or --index N");
            return train(*o, mpi);
          }};
}

}  // namespace xfer::app
