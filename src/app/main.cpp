// xfer: fine-tune ImageNet models on real-world datasets over a full grid, at cluster scale, and measure how
// ImageNet accuracy relates to downstream performance (Fang, Kornblith & Schmidt 2023).
#include <csignal>
#include <cstdio>
#include <iostream>

#include <CLI/CLI.hpp>

#include "commands.hpp"
#include "xfer/sweep/mpi.hpp"
#include "xfer/sweep/sweep.hpp"
#include "xfer/core/build_info.hpp"
#include "xfer/core/error.hpp"
#include "xfer/core/log.hpp"
#include "xfer/core/stop.hpp"

int main(int argc, char** argv) {
  CLI::App cli{"xfer — does progress on ImageNet transfer to real-world datasets? Sweeps, results, statistics.",
               "xfer"};
  cli.require_subcommand(1);
  cli.fallthrough();  // global flags (--log-level) also after the subcommand
  std::string log_level;
  cli.add_option("--log-level", log_level, "trace|debug|info|warn|error|critical|off (default: $XFER_LOG, else info)");
  cli.set_version_flag("--version", "xfer " + xfer::build_info::version() + " (" + xfer::build_info::git_commit() +
                                        (xfer::build_info::git_dirty() ? ", dirty" : "") + ")");

  xfer::app::PlanOptions plan;
  auto* plan_cmd = cli.add_subcommand("plan", "Show what a spec will run: trials per model × dataset, cost, GPU-hours");
  plan_cmd->add_option("spec", plan.spec, "experiment spec (TOML)")->required();
  plan_cmd->add_flag("--list", plan.list, "print every trial with its key");
  plan_cmd->add_flag("--json", plan.json, "machine-readable output on stdout");
  plan_cmd->add_option("--throughput", plan.throughput,
                       "CSV with header model,images_per_second[,input_size]: training images/s per GPU, for "
                       "GPU-hour estimates");

  xfer::app::ScoreOptions score;
  auto* score_cmd = cli.add_subcommand("score", "Score a predictions file with a study metric (scikit-learn semantics)");
  score_cmd->add_option("--metric", score.metric, "accuracy|balanced_accuracy|qwk|macro_f1|roc_auc|log_loss")->required();
  score_cmd->add_option("--labels", score.labels, "CSV, no header: one class per row, or k 0/1 columns (multi-label)")
      ->required();
  score_cmd->add_option("--scores", score.scores, "CSV, no header: k scores per row (binary: 1 column p(positive) or 2)")
      ->required();
  score_cmd->add_option("--thresholds-from", score.thresholds_from,
                        "VAL_LABELS,VAL_SCORES: tune per-class thresholds on validation (multi-label macro_f1)");
  score_cmd->add_flag("--json", score.json, "print {\"metric\": NAME, \"value\": V}");
  score_cmd->add_option("--bootstrap", score.bootstrap, "resamples for a percentile interval (0: none)")
      ->check(CLI::NonNegativeNumber);
  score_cmd->add_option("--seed", score.seed, "bootstrap seed");
  score_cmd->add_option("--level", score.level, "interval level")->check(CLI::Range(0.5, 0.9999));

  xfer::app::SplitsOptions splits;
  auto* splits_cmd = cli.add_subcommand("splits", "Write a dataset's exact splits (sample_id,split) and a summary");
  splits_cmd->add_option("--spec", splits.spec, "experiment spec (with --dataset)");
  splits_cmd->add_option("--dataset", splits.dataset, "dataset name in the spec");
  splits_cmd->add_option("--kind", splits.kind, "cct20|aptos|hpa|melanoma|cassava|eurosat|imagefolder|csv|idx");
  splits_cmd->add_option("--root", splits.root, "the dataset's folder as downloaded");
  splits_cmd->add_option("--out", splits.out, "CSV to write: sample_id,split");
  splits_cmd->add_option("--validation", splits.validation, "paper|holdout")->check(CLI::IsMember({"paper", "holdout"}));
  splits_cmd->add_option("--heldout-seed", splits.heldout_seed, "default: the paper's seed for the kind");
  splits_cmd->add_option("--heldout-fraction", splits.heldout_fraction, "default 0.2")->check(CLI::Range(0.0, 1.0));
  splits_cmd->add_option("--val-seed", splits.val_seed, "holdout seed");
  splits_cmd->add_option("--val-fraction", splits.val_fraction, "holdout share of train, default 0.1")
      ->check(CLI::Range(0.0, 1.0));
  splits_cmd->add_option("--split-file", splits.split_file, "hpa: the paper's split file");
  splits_cmd->add_option("--manifest", splits.manifest, "csv: the manifest file");
  splits_cmd->add_flag("--strict", splits.strict, "a bad sample is an error");
  splits_cmd->add_flag("--json", splits.json, "summary as JSON");

  xfer::app::TrainOptions train;
  auto* train_cmd = cli.add_subcommand("train", "Run one trial of a spec standalone (no results file): debug, time, check");
  train_cmd->add_option("spec", train.spec, "experiment spec (TOML)")->required();
  auto* trial_opt = train_cmd->add_option("--trial", train.trial, "trial key, or a unique prefix of it (xfer plan --list)");
  auto* index_opt = train_cmd->add_option("--index", train.index, "the trial's position in the expansion");
  trial_opt->excludes(index_opt);
  train_cmd->add_option("--device", train.device, "auto | cpu | cuda | cuda:N");
  train_cmd->add_option("--threads", train.threads, "torch threads (default: from the allocation)");
  train_cmd->add_option("--checkpoint-dir", train.checkpoint_dir, "default: the spec's checkpoint_dir");
  train_cmd->add_option("--predictions", train.predictions, "write val.csv / test.csv of the selected epoch here");
  train_cmd->add_flag("--json", train.json, "the result as JSON on stdout");
  train_cmd->add_flag("--deterministic-input", train.deterministic_input,
                      "reproducibility checks: train on the eval transform, no shuffle");
  train_cmd->add_option("--head-init", train.head_init, "TorchScript nn.Linear to initialise the head from");
  train_cmd->add_option("--step-log", train.step_log, "append epoch,step,lr,loss,samples per step to this CSV");
  train_cmd->add_option("--micro-batches", train.micro_batches, "split each batch in N micro-batches (accumulate)")
      ->check(CLI::PositiveNumber);
  train_cmd->add_flag("--keep-checkpoints", train.keep_checkpoints,
                      "leave the checkpoints in place when the trial ends (a rerun then reports from them)");

  xfer::sweep::RunOptions run;
  bool run_dry = false, run_json = false;
  auto* run_cmd = cli.add_subcommand("run", "Run the sweep (under mpirun/srun or alone) into the results file");
  run_cmd->add_option("spec", run.spec, "experiment spec (TOML)")->required();
  run_cmd->add_option("--results", run.results, "results file (default: the spec's)");
  run_cmd->add_flag("--dry-run", run_dry, "show what would run; change nothing");
  run_cmd->add_flag("--json", run_json, "with --dry-run: JSON output");
  run_cmd->add_option("--time-limit", run.time_limit, "seconds from the start (default: SLURM_JOB_END_TIME)");
  run_cmd->add_option("--grace", run.grace, "seconds kept in hand before the end; the bound after a signal (default 60)");
  run_cmd->add_option("--device", run.device, "auto | cpu | cuda");
  run_cmd->add_option("--threads", run.threads, "torch threads per rank (default: from the allocation)");
  run_cmd->add_option("--heartbeat-timeout", run.heartbeat_timeout, "seconds of silence before a group is declared hung");
  run_cmd->add_option("--simulate", run.simulate, "benchmark: no training, each trial sleeps cost_gflop × this µs");
  std::string shard;
  run_cmd->add_option("--shard", shard, "I/K: run shard I of K (job arrays); results go to <stem>.shard-I-of-K<ext>");
  bool no_progress = false;
  run_cmd->add_flag("--no-progress", no_progress, "no live progress line");

  xfer::app::StatusOptions status;
  auto* status_cmd = cli.add_subcommand("status", "Progress of a sweep, from its results file alone");
  status_cmd->add_option("results", status.results, "results file (HDF5), or the spec that names it")->required();
  status_cmd->add_flag("--json", status.json, "machine-readable");
  status_cmd->add_flag("--trials", status.trials, "list every trial");

  xfer::app::AnalyzeOptions analyze;
  auto add_analysis_options = [&](CLI::App* c, const char* out_help) {
    c->add_option("results", analyze.results, "results file (HDF5)");
    c->add_option("--csv", analyze.csv, "a table with header model,imagenet_top1,dataset,value[,n_test] instead");
    c->add_option("--selection", analyze.selection, "paper | holdout | oracle (default: by validation, as run)");
    c->add_option("--out", analyze.out, out_help);
    c->add_option("--resamples", analyze.resamples, "bootstrap resamples over models (default 10000)");
    c->add_option("--seed", analyze.seed, "bootstrap seed");
    c->add_flag("!--no-figures", analyze.figures, "skip the gnuplot figures");
    c->add_flag("!--no-write", analyze.write_back, "do not write /analysis into the results file");
  };
  auto* analyze_cmd = cli.add_subcommand("analyze", "Statistics of the study: correlations, fits, bootstrap intervals");
  add_analysis_options(analyze_cmd, "folder for tables and figures (default: <input>.analysis)");
  analyze_cmd->add_flag("--json", analyze.json, "the statistics as JSON on stdout");
  auto* report_cmd = cli.add_subcommand("report", "One self-contained HTML page: tables, figures, provenance");
  add_analysis_options(report_cmd, "the HTML file (default: <input>.report.html)");

  xfer::app::SubmitOptions submit;
  auto* submit_cmd = cli.add_subcommand("submit", "Render the job script for a SLURM request and submit it (sbatch)");
  submit_cmd->add_option("spec", submit.spec, "experiment spec (TOML)")->required();
  submit_cmd->add_option("--nodes", submit.nodes, "nodes (default 1)");
  submit_cmd->add_option("--gpus-per-node", submit.gpus_per_node, "GPUs per node (0: a CPU job)");
  submit_cmd->add_option("--ranks-per-node", submit.ranks_per_node, "ranks per node (default: one per GPU, else 1)");
  submit_cmd->add_option("--cpus-per-task", submit.cpus_per_task, "cores per rank (default 8 with GPUs, 4 without)");
  submit_cmd->add_option("--time", submit.time, "time limit: minutes, HH:MM:SS or D-HH:MM:SS")->required();
  submit_cmd->add_option("--partition", submit.partition, "SLURM partition");
  submit_cmd->add_option("--account", submit.account, "SLURM account");
  submit_cmd->add_option("--job-name", submit.job_name, "default: xfer-<study>");
  submit_cmd->add_flag("--preemptible", submit.preemptible, "checkpoint on USR2 before the end and requeue while work remains");
  submit_cmd->add_option("--signal-seconds", submit.signal_seconds, "preemptible: warning before the end (default 300)");
  submit_cmd->add_option("--array", submit.array, "a job array of K shards, and a merge job after it");
  submit_cmd->add_option("--gflops-per-gpu", submit.gflops_per_gpu, "assumed speed for the time check (default 20000)");
  submit_cmd->add_option("--gflops-per-core", submit.gflops_per_core, "assumed speed per core without GPUs (default 40)");
  submit_cmd->add_option("--xfer", submit.xfer, "the xfer binary the job runs (default: this one)");
  submit_cmd->add_option("--log-dir", submit.log_dir, "job logs (default: <results folder>/logs)");
  submit_cmd->add_flag("--dry-run", submit.dry_run, "print the script; submit nothing");

  xfer::app::MergeOptions merge;
  auto* merge_cmd = cli.add_subcommand("merge", "Combine shard results files (a job array's) into one, each trial once");
  merge_cmd->add_option("out", merge.out, "the merged results file (must not exist)")->required();
  merge_cmd->add_option("shards", merge.shards, "shard results files")->required();

  try {
    cli.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return cli.exit(e);
  }

  try {
    // MPI first (run, train), then Kokkos, then torch's threads: the order platform-notes.md prescribes.
    std::unique_ptr<xfer::sweep::MpiRuntime> mpi;
    // Catch a stop signal from the first instant: SLURM may warn a short allocation before MPI is even up, and the
    // default action would kill the rank instead of letting it stop cleanly.
    if ((*run_cmd && !run_dry) || *train_cmd) xfer::install_stop_handlers({SIGTERM, SIGINT, SIGUSR1, SIGUSR2});
    if ((*run_cmd && !run_dry) || *train_cmd) mpi = std::make_unique<xfer::sweep::MpiRuntime>(&argc, &argv);
    xfer::log::init(log_level, mpi && mpi->size() > 1 ? std::optional<int>(mpi->rank()) : std::nullopt);
    run.progress = !no_progress;
    if (!shard.empty()) {
      const auto slash = shard.find('/');
      try {
        if (slash == std::string::npos) throw std::invalid_argument("");
        run.shard = std::stoi(shard.substr(0, slash));
        run.shards = std::stoi(shard.substr(slash + 1));
      } catch (const std::exception&) {
        throw xfer::Error::input("--shard: expected I/K (e.g. 0/4), got '" + shard + "'");
      }
      if (run.shards < 1 || run.shard < 0 || run.shard >= run.shards)
        throw xfer::Error::input("--shard " + shard + ": need 0 ≤ I < K");
    }
    if (*run_cmd) return xfer::app::run(run, run_dry, run_json, mpi.get());
    if (*status_cmd) return xfer::app::status(status);
    if (*analyze_cmd) return xfer::app::analyze(analyze);
    if (*submit_cmd) return xfer::app::submit(submit);
    if (*merge_cmd) return xfer::app::merge(merge);
    if (*report_cmd) return xfer::app::report(analyze);
    if (*plan_cmd) return xfer::app::plan(plan);
    if (*score_cmd) return xfer::app::score(score);
    if (*splits_cmd) return xfer::app::splits(splits);
    if (*train_cmd) {
      if (train.trial.empty() && train.index < 0) throw xfer::Error::input("xfer train: give --trial KEY or --index N");
      return xfer::app::train(train, mpi.get());
    }
  } catch (const xfer::Error& e) {
    std::fflush(stdout);
    std::cerr << "xfer: error: " << e.what() << std::endl;
    return e.kind() == xfer::Error::Kind::input ? 2 : 1;
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::cerr << "xfer: internal error: " << e.what() << std::endl;
    return 1;
  }
  return 0;
}
