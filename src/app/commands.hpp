// app: the `xfer` command line, one file per subcommand (CLI11's pattern): each file declares its subcommand's flags
// (`<name>_command`) beside the plain options struct and the function that runs it, so commands can also be called
// from tests without a shell. main.cpp only orders start-up (signals, MPI, logging) and dispatches.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace CLI {
class App;
}
namespace xfer::sweep {
class MpiRuntime;
}

namespace xfer::app {

// A registered subcommand: its CLI11 node, whether it needs MPI (and the stop-signal handlers) before it runs — asked
// after parsing, since `run --dry-run` does not —, and what runs it.
struct Command {
  CLI::App* sub = nullptr;
  std::function<bool()> needs_mpi;  // empty: never
  std::function<int(sweep::MpiRuntime*)> run;
};
Command plan_command(CLI::App& cli);
Command score_command(CLI::App& cli);
Command splits_command(CLI::App& cli);
Command train_command(CLI::App& cli);
Command run_command(CLI::App& cli);
Command status_command(CLI::App& cli);
Command analyze_command(CLI::App& cli);
Command report_command(CLI::App& cli);
Command submit_command(CLI::App& cli);
Command merge_command(CLI::App& cli);

struct PlanOptions {
  std::string spec;
  bool list = false;
  bool json = false;
  std::string throughput;  // CSV: model,images_per_second[,input_size]
};
int plan(const PlanOptions& o);

}  // namespace xfer::app

namespace xfer::app {

struct ScoreOptions {
  std::string metric;
  std::string labels;
  std::string scores;
  std::string thresholds_from;  // "VAL_LABELS,VAL_SCORES"
  bool json = false;
  int bootstrap = 0;            // resamples; 0: no interval
  uint64_t seed = 0;
  double level = 0.95;
};
int score(const ScoreOptions& o);

}  // namespace xfer::app

namespace xfer::app {

struct SplitsOptions {
  std::string spec, dataset;  // from a spec …
  std::string kind, root;     // … or a kind and a root
  std::string out;
  std::string validation = "paper";
  int64_t heldout_seed = -1;  // -1: the kind's paper seed
  double heldout_fraction = 0.2;
  int64_t val_seed = 0;
  double val_fraction = 0.1;
  std::string split_file = "split.stratified.small.0.csv";
  std::string manifest = "manifest.csv";
  bool strict = false;
  bool json = false;
};
int splits(const SplitsOptions& o);

}  // namespace xfer::app

namespace xfer::app {

struct TrainOptions {
  std::string spec;
  std::string trial;        // key (or a unique prefix)
  int index = -1;           // or the position in the expansion
  std::string device = "auto";
  int threads = 0;
  std::string checkpoint_dir;  // default: the spec's, /<key>
  bool json = false;
  std::string predictions;     // folder for val/test predictions CSVs
  bool deterministic_input = false;
  std::string head_init;
  std::string step_log;
  int micro_batches = 1;
  std::string gradient_exchange = "overlap";
  std::string input_pipeline = "host";
  bool keep_checkpoints = false;  // leave the trial's checkpoints in place when it ends
};
// Under mpirun, the ranks form one data-parallel group for the trial.
int train(const TrainOptions& o, sweep::MpiRuntime* mpi);

}  // namespace xfer::app

namespace xfer::sweep {
class MpiRuntime;
struct RunOptions;
}  // namespace xfer::sweep

namespace xfer::app {

int run(const sweep::RunOptions& o, bool dry_run, bool json, sweep::MpiRuntime* mpi);

struct StatusOptions {
  std::string results;
  bool json = false;
  bool trials = false;  // list every trial
};
int status(const StatusOptions& o);

}  // namespace xfer::app

namespace xfer::app {

struct AnalyzeOptions {
  std::string results;      // a results file …
  std::string csv;          // … or a CSV table
  std::string selection;    // paper | holdout | oracle
  std::string out;          // folder for tables and figures; report: the HTML file
  int resamples = 10000;
  uint64_t seed = 0;
  bool json = false;
  bool figures = true;
  bool write_back = true;   // /analysis in the results file
};
int analyze(const AnalyzeOptions& o);
int report(const AnalyzeOptions& o);

}  // namespace xfer::app

namespace xfer::app {

struct SubmitOptions {
  std::string spec;
  int nodes = 1;
  int gpus_per_node = 0;
  int ranks_per_node = 0;    // 0: one per GPU, or 1 on CPU nodes
  int cpus_per_task = 0;     // 0: 8 with GPUs, 4 without
  std::string time;
  std::string partition, account, job_name;
  bool preemptible = false;
  int signal_seconds = 300;  // preemptible: warning before the end
  int array = 0;             // > 1: a job array of that many shards, plus the merge job
  double gflops_per_gpu = 20000, gflops_per_core = 40;  // assumed speeds for the time check
  std::string xfer;          // the binary the job runs (default: this one)
  std::string log_dir;       // default: <results folder>/logs
  bool dry_run = false;
  // TPU through PJRT (jobscripts/tpu_vm.sh, tpu_pod.sh): chips per host > 0 selects them; no SLURM there.
  int tpu_chips = 0;
  int tpu_hosts = 1;
  std::string tpu_hostfile;  // the workers, one per line (tpu_hosts > 1)
  std::string pjrt_plugin;   // default: libtpu.so of the host's libtpu wheel
};
int submit(const SubmitOptions& o);

struct MergeOptions {
  std::string out;
  std::vector<std::string> shards;
  bool force = false;  // merge shards a live run holds
};
int merge(const MergeOptions& o);

}  // namespace xfer::app
