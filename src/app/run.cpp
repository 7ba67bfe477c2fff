// `xfer run SPEC`: the sweep, under mpirun / srun or as a single process.
#include <iostream>
#include <memory>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "commands.hpp"
#include "validators.hpp"
#include "xfer/metrics/metrics.hpp"
#include "xfer/core/error.hpp"
#include "xfer/sweep/sweep.hpp"

namespace xfer::app {

int run(const sweep::RunOptions& o, bool dry_run, bool json, sweep::MpiRuntime* mpi) {
  if (dry_run) return sweep::dry_run(o, json);
  metrics::Runtime kokkos;  // after MPI_Init, before any kernel
  return sweep::run(o, *mpi);
}

namespace {
struct RunCommandOptions {
  sweep::RunOptions run;
  bool dry_run = false, json = false, no_progress = false;
  std::string shard;  // I/K
};
}  // namespace

Command run_command(CLI::App& cli) {
  auto o = std::make_shared<RunCommandOptions>();
  auto* sub = cli.add_subcommand("run", "Run the sweep (under mpirun/srun or alone) into the results file");
  sub->add_option("spec", o->run.spec, "experiment spec (TOML)")->required();
  sub->add_option("--results", o->run.results, "results file (default: the spec's)");
  sub->add_flag("--dry-run", o->dry_run, "show what would run; change nothing");
  sub->add_flag("--json", o->json, "with --dry-run: JSON output");
  sub->add_option("--time-limit", o->run.time_limit, "seconds from the start (default: SLURM_JOB_END_TIME)")
      ->check(at_least(0, true));
  sub->add_option("--grace", o->run.grace,
                  "seconds kept in hand before the end; a stop ends the process within grace + 30 s (default 60)")
      ->check(at_least(0));
  sub->add_option("--device", o->run.device, "auto | cpu | cuda | cuda:N (checked on every rank before anything runs)");
  sub->add_option("--threads", o->run.threads, "torch threads per rank (default: from the allocation)")
      ->check(at_least(1));
  const double min_timeout = 3 * o->run.heartbeat;
  sub->add_option("--input-pipeline", o->run.input_pipeline,
                  "host (decode and augment on CPU threads; default) | device (decoded once into a cache, crops on the device)")
      ->check(CLI::IsMember(words<InputPipeline>()));
  sub->add_option("--heartbeat-timeout", o->run.heartbeat_timeout,
                  fmt::format("seconds of silence before a group is declared hung (at least {:g}: three heartbeats; "
                              "default {:g})", min_timeout, o->run.heartbeat_timeout))
      ->check(at_least(min_timeout, false, "three heartbeat intervals; a shorter one declares healthy trials hung"));
  sub->add_option("--simulate", o->run.simulate, "benchmark: no training, each trial sleeps cost_gflop × this µs")
      ->check(at_least(0));
  sub->add_option("--shard", o->shard, "I/K: run shard I of K (job arrays); results go to <stem>.shard-I-of-K<ext>");
  sub->add_flag("--extend", o->run.extend,
                 "add this spec's trials to a results file that holds the same study under another spec");
  sub->add_flag("--no-progress", o->no_progress, "no live progress line");
  return {sub, [o] { return !o->dry_run; }, [o](sweep::MpiRuntime* mpi) {
      o->run.progress = !o->no_progress;
      if (!o->shard.empty()) {
        const auto slash = o->shard.find('/');
        try {
          if (slash == std::string::npos) throw std::invalid_argument("");
          o->run.shard = std::stoi(o->shard.substr(0, slash));
          o->run.shards = std::stoi(o->shard.substr(slash + 1));
        } catch (const std::exception&) {
          throw xfer::Error::input("--shard: expected I/K (e.g. 0/4), got '" + o->shard + "'");
        }
        if (o->run.shards < 1 || o->run.shard < 0 || o->run.shard >= o->run.shards)
          throw xfer::Error::input("--shard " + o->shard + ": need 0 ≤ I < K");
      }
      return run(o->run, o->dry_run, o->json, mpi);
    }};
}

}  // namespace xfer::app
