// `xfer submit SPEC …`: the right job script for the request, rendered from jobscripts/ (their bodies are compiled
// in), checked, quoted, and submitted with sbatch without waiting. `xfer merge OUT SHARD…` for job arrays.
#include <memory>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <regex>
#include <set>
#include <sstream>

#include <fmt/format.h>

#include <CLI/CLI.hpp>

#include "commands.hpp"
#include "validators.hpp"
#include "jobscripts.hpp"
#include "xfer/core/build_info.hpp"
#include "xfer/core/error.hpp"
#include "xfer/data/dataset.hpp"
#include "xfer/spec/dataset_kind.hpp"
#include "xfer/grid/cost.hpp"
#include "xfer/grid/grid.hpp"
#include "xfer/pjrt/bundle.hpp"
#include "xfer/spec/spec.hpp"
#include "xfer/sweep/dataset_sizes.hpp"
#include "xfer/sweep/sweep.hpp"
#include "xfer/train/trial.hpp"

namespace fs = std::filesystem;

namespace xfer::app {

namespace {

// Shell single quotes: the value reaches the script as data, whatever it contains.
std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

void check_name(const std::string& flag, const std::string& v) {
  static const std::regex ok("[A-Za-z0-9_.+-]{1,64}");
  if (!std::regex_match(v, ok))
    throw Error::input(flag + " \"" + v + "\": use letters, digits and _ . + - only (1 to 64 characters); it goes into "
                       "the job script");
}

void check_path(const std::string& what, const std::string& p, bool in_sbatch_line) {
  if (p.find_first_of("\n\r") != std::string::npos || p.find('\0') != std::string::npos)
    throw Error::input(what + ": a path with a line break cannot go into a job script");
  if (in_sbatch_line && p.find_first_of(" \t\"'%\\$`") != std::string::npos)
    throw Error::input(what + " \"" + p + "\": SLURM reads #SBATCH lines without a shell, so this path must not "
                       "contain spaces, quotes, % or $ (choose another folder with --log-dir)");
}

// Runs argv without a shell; returns stdout, throws with stderr on failure.
std::string run_captured(const std::vector<std::string>& argv) {
  int out[2];
  if (pipe(out) != 0) throw Error("pipe failed");
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(out[1], 1);
    close(out[0]);
    close(out[1]);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execvp(args[0], args.data());
    _exit(127);
  }
  close(out[1]);
  std::string text;
  char buf[4096];
  for (ssize_t n; (n = read(out[0], buf, sizeof buf)) > 0;) text.append(buf, static_cast<size_t>(n));
  close(out[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    throw Error(argv[0] + " failed (exit " + std::to_string(WIFEXITED(status) ? WEXITSTATUS(status) : -1) +
                (WEXITSTATUS(status) == 127 ? "; is SLURM's sbatch on PATH?" : "") + ")");
  return text;
}

std::string self_path() {
  char buf[PATH_MAX] = {0};
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "xfer";
}

std::string duration(double s) {
  if (s < 120) return fmt::format("{:.0f} s", s);
  if (s < 7200) return fmt::format("{:.1f} min", s / 60);
  return fmt::format("{:.1f} h", s / 3600);
}

// A pod slice's hostfile (mpirun --hostfile): one worker per line ("host" or "host slots=N"; # comments), as many as
// --tpu-hosts. Checked here, not when mpirun meets it on the slice. A dry run may render for a file that exists only
// on the TPU VM: it is checked when it is here, and its absence is a warning.
void check_hostfile(const std::string& path, int hosts, bool dry_run) {
  std::error_code ec;
  if (!fs::exists(path, ec)) {
    if (!dry_run) throw Error::input("--tpu-hostfile " + path + ": no such file (the workers of the slice, one per line)");
    std::cerr << "xfer: warning: --tpu-hostfile " << path << ": not here; the script reads it on worker 0\n";
    return;
  }
  std::ifstream in(path);
  if (!fs::is_regular_file(path, ec) || !in)
    throw Error::input("--tpu-hostfile " + path + ": not a readable file (the workers of the slice, one per line)");
  static const std::regex line_ok(R"([A-Za-z0-9_.:-]{1,253}([ \t]+slots=[0-9]{1,4})?)");
  int workers = 0, n = 0;
  for (std::string line; std::getline(in, line);) {
    ++n;
    if (const auto hash = line.find('#'); hash != std::string::npos) line.erase(hash);
    line.erase(0, line.find_first_not_of(" \t\r"));
    line.erase(line.find_last_not_of(" \t\r") + 1);
    if (line.empty()) continue;
    if (!std::regex_match(line, line_ok))
      throw Error::input(fmt::format("--tpu-hostfile {}:{}: \"{}\" is not a worker (expected a host name, optionally "
                                     "followed by slots=N)", path, n, line.substr(0, 80)));
    ++workers;
  }
  if (workers != hosts)
    throw Error::input(fmt::format("--tpu-hostfile {}: {} worker(s), but --tpu-hosts {}: one line per host of the slice",
                                   path, workers, hosts));
}

// `xfer submit --tpu-chips N [--tpu-hosts H --tpu-hostfile F]`: the TPU VM or pod-slice script (PJRT engine) for the
// spec, after the checks that would otherwise fail on the TPU: exported programs for every trial's shape, fp32, rank
// groups only as whole pod slices. TPU VMs have no SLURM: the script is written (or printed) and started on the VM.
int submit_tpu(const SubmitOptions& o, const spec::Spec& spec) {
  if (o.tpu_chips < 1 || o.tpu_chips > 64) throw Error::input("--tpu-chips: chips per host, 1 to 64");
  if (o.tpu_hosts < 1) throw Error::input("--tpu-hosts must be ≥ 1");
  if (o.gpus_per_node > 0 || o.array > 1 || o.preemptible || o.nodes > 1 || !o.partition.empty() ||
      !o.account.empty() || !o.time.empty())
    throw Error::input("--tpu-chips: TPU VMs run without SLURM; --gpus-per-node, --nodes, --array, --preemptible, "
                       "--partition, --account and --time do not apply (use --tpu-hosts for a pod slice)");
  if (o.tpu_hosts > 1 && o.tpu_hostfile.empty())
    throw Error::input("--tpu-hosts " + std::to_string(o.tpu_hosts) + ": give the workers with --tpu-hostfile");
  // A TPU VM: one rank per chip, a one-chip program each. A pod slice: one process per host, and either every trial
  // one SPMD program over the whole slice (ranks_per_trial = the hosts: a client across the hosts, formed through the
  // group's key-value store over MPI) or each host its own slice (ranks_per_trial = 1: a program over its chips).
  if (o.tpu_hosts > 1) check_hostfile(o.tpu_hostfile, o.tpu_hosts, o.dry_run);
  const std::string job_name = o.job_name.empty() ? "xfer-" + spec.study.name : o.job_name;
  check_name("--job-name", job_name);
  // The trials one at a time (a 10^7 grid is never held): the first sets the span the others must share.
  int span = 0, devices = 1;
  bool slice = false;
  std::set<std::string> checked;
  grid::for_each_trial(spec, [&](const grid::Trial& t) {
    const auto& c = t.config;
    if (span == 0) {
      span = c.ranks_per_trial;
      slice = o.tpu_hosts > 1 && span == o.tpu_hosts;
      devices = slice ? o.tpu_hosts * o.tpu_chips : o.tpu_hosts > 1 ? o.tpu_chips : 1;
    }
    if (c.precision == Precision::bf16 || c.precision == Precision::fp16)
      throw Error::input("trial " + t.key.str() + ": precision " + name_str(c.precision) + " — the exported PJRT "
                         "programs train in fp32; set precision = \"fp32\" (or \"auto\") for a TPU run");
    if (o.tpu_hosts == 1 && c.ranks_per_trial > 1)
      throw Error::input(fmt::format("trial {}: ranks_per_trial {} on one TPU VM — a PJRT trial there is one process "
                                     "per chip; data parallelism over a VM's chips is a pod-slice run (--tpu-hosts)",
                                     t.key.str(), c.ranks_per_trial));
    if (o.tpu_hosts > 1 && c.ranks_per_trial != span)
      throw Error::input(fmt::format("trial {}: ranks_per_trial {}, another trial {} — on a pod slice every trial "
                                     "spans either the whole slice (ranks_per_trial = {} hosts) or one host (1): a "
                                     "process keeps one TPU client", t.key.str(), c.ranks_per_trial, span, o.tpu_hosts));
    if (o.tpu_hosts > 1 && c.ranks_per_trial != 1 && c.ranks_per_trial != o.tpu_hosts)
      throw Error::input(fmt::format("trial {}: ranks_per_trial {} on a slice of {} hosts — a trial spans the whole "
                                     "slice (ranks_per_trial = {}) or one host (1)", t.key.str(), c.ranks_per_trial,
                                     o.tpu_hosts, o.tpu_hosts));
    const std::string backbone = train::environment_for(spec, t).backbone;
    const std::string what = fmt::format("{} {} {} {} {} {} {} {} {} {}", backbone, c.input_size, c.batch_size,
                                         name(c.optimizer), c.beta1, c.beta2, c.eps, c.momentum, c.nesterov,
                                         c.label_smoothing) + c.kind;
    if (!checked.insert(what).second) return;
    pjrt::BundleRequest request{backbone, c.input_size, 0, c.batch_size, devices, std::string(name(c.optimizer))};
    request.beta1 = c.beta1, request.beta2 = c.beta2, request.eps = c.eps, request.momentum = c.momentum;
    request.nesterov = c.nesterov, request.label_smoothing = c.label_smoothing;
    const spec::DatasetKind* kind = spec::find_dataset_kind(c.kind);
    request.multilabel = kind && kind->multilabel;
    pjrt::find_bundle(request);
  });
  const std::string spec_path = fs::absolute(o.spec).lexically_normal().string();
  const std::string xfer_path = o.xfer.empty() ? self_path() : fs::absolute(o.xfer).string();
  check_path("spec", spec_path, false);
  check_path("xfer binary", xfer_path, false);
  if (!o.pjrt_plugin.empty()) check_path("--pjrt-plugin", o.pjrt_plugin, false);
  const std::string tpl = o.tpu_hosts > 1 ? "tpu_pod" : "tpu_vm";
  std::ostringstream s;
  s << "#!/usr/bin/env bash\n# Rendered by `xfer submit` (xfer " << build_info::version() << ") from jobscripts/" << tpl
    << ".sh; everything after these variables is that script's.\n";
  s << "SPEC=" << shell_quote(spec_path) << "\nXFER=" << shell_quote(xfer_path) << "\nCHIPS=" << o.tpu_chips << "\n";
  if (o.tpu_hosts > 1)
    s << "HOSTS=" << o.tpu_hosts << "\nHOSTFILE=" << shell_quote(fs::absolute(o.tpu_hostfile).string())
      << "\nSPAN=" << (slice ? "slice" : "host") << "\n";
  s << "export SPEC XFER CHIPS" << (o.tpu_hosts > 1 ? " HOSTS HOSTFILE SPAN" : "") << "\n";
  if (!o.pjrt_plugin.empty()) s << "export XFER_PJRT_PLUGIN=" << shell_quote(o.pjrt_plugin) << "\n";
  s << jobscript_body(tpl);
  const std::string script = s.str();
  if (o.dry_run) {
    std::cout << script;
    return 0;
  }
  const fs::path jobs = fs::path(spec.study.results.path).parent_path() / "jobs";
  fs::create_directories(jobs);
  char stamp[32];
  const std::time_t now = std::time(nullptr);
  std::strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", std::gmtime(&now));
  const fs::path file = jobs / (job_name + "-" + stamp + ".sh");
  std::ofstream(file) << script;
  fs::permissions(file, fs::perms::owner_exec, fs::perm_options::add);
  std::cout << "wrote " << file.string() << "; TPU VMs have no scheduler: start it "
            << (o.tpu_hosts > 1 ? "on worker 0 of the slice" : "on the TPU VM") << " (e.g. nohup " << file.string()
            << " &)\n";
  return 0;
}

}  // namespace

int submit(const SubmitOptions& o) {
  const spec::Spec spec = grid::with_upstream(data::with_layouts_resolved(spec::load(o.spec)));
  grid::plan_cells(spec);  // the ceiling and duplicate keys, in bounded memory; the trials are then streamed
  if (o.tpu_chips > 0) return submit_tpu(o, spec);
  // The request.
  if (o.nodes < 1) throw Error::input("--nodes must be ≥ 1");
  if (o.gpus_per_node < 0) throw Error::input("--gpus-per-node must be ≥ 0");
  const int ranks = o.ranks_per_node > 0 ? o.ranks_per_node : std::max(1, o.gpus_per_node);
  const int cpus = o.cpus_per_task > 0 ? o.cpus_per_task : (o.gpus_per_node > 0 ? 8 : 4);
  if (o.gpus_per_node > 0 && ranks > o.gpus_per_node)
    throw Error::input(fmt::format("--ranks-per-node {} with --gpus-per-node {}: xfer runs one rank per GPU; ask for "
                                   "as many GPUs as ranks", ranks, o.gpus_per_node));
  if (o.time.empty()) throw Error::input("--time is required (e.g. 12:00:00 or 1-00:00:00)");
  const double seconds = sweep::parse_slurm_time(o.time);
  if (seconds < 0)
    throw Error::input("--time \"" + o.time + "\": expected SLURM's format — minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM or "
                       "D-HH:MM:SS");
  if (!o.partition.empty()) check_name("--partition", o.partition);
  if (!o.account.empty()) check_name("--account", o.account);
  const std::string job_name = o.job_name.empty() ? "xfer-" + spec.study.name : o.job_name;
  check_name("--job-name", job_name);
  if (o.array == 1 || o.array < 0 || o.array > 10000) throw Error::input("--array: 2 to 10000 shards");
  if (o.preemptible && o.array > 1) throw Error::input("--preemptible and --array: choose one template");
  if (o.array > 1 && !spec.upstreams.empty())
    throw Error::input(o.spec + ": --array: [[upstream]] stages do not run as a job array yet (a shard's downstream "
                       "trials would wait for other shards' pre-training trials); submit the study as one job");
  if (o.signal_seconds < 30) throw Error::input("--signal-seconds: at least 30 (SLURM checks limits every ~30 s)");
  // Requests that cannot work.
  bool gpu_only = spec.grid.precision == "bf16" || spec.grid.precision == "fp16";
  for (const auto& ov : spec.overrides) gpu_only |= ov.precision && (*ov.precision == "bf16" || *ov.precision == "fp16");
  if (gpu_only && o.gpus_per_node == 0)
    throw Error::input("the spec asks for bf16/fp16 precision, which runs on CUDA GPUs, and --gpus-per-node is 0");
  int widest = 1;
  double cheapest = 1e300;  // one epoch of the cheapest trial, seconds
  const grid::CostModel costs(spec, sweep::dataset_sizes(spec));
  grid::for_each_trial(spec, [&](const grid::Trial& t) {
    widest = std::max(widest, t.config.ranks_per_trial);
    const double epoch = costs.gflop(t) / t.config.epochs;
    const double rate = (o.gpus_per_node > 0 ? o.gflops_per_gpu : o.gflops_per_core * cpus) * t.config.ranks_per_trial;
    cheapest = std::min(cheapest, epoch / rate);
  });
  if (widest > o.nodes * ranks)
    throw Error::input(fmt::format("trials need groups of {} ranks (ranks_per_trial) but the job has {} ({} node(s) × {} "
                                   "rank(s))", widest, o.nodes * ranks, o.nodes, ranks));
  // Time: start-up, the stop margin, and one epoch of the cheapest trial must fit.
  const double margin = o.preemptible ? o.signal_seconds : 60.0, startup = 60.0;
  if (seconds > 0 && seconds < startup + margin + cheapest)
    throw Error::input(fmt::format("--time {} ({}) is shorter than start-up (~{}), the stop margin ({}) and one epoch of "
                                   "the cheapest trial (~{} at an assumed {} GFLOP/s per {}); nothing would finish",
                                   o.time, duration(seconds), duration(startup), duration(margin), duration(cheapest),
                                   o.gpus_per_node > 0 ? o.gflops_per_gpu : o.gflops_per_core * cpus,
                                   o.gpus_per_node > 0 ? "GPU" : "rank"));
  // Paths that reach the script.
  const std::string spec_path = fs::absolute(o.spec).lexically_normal().string();
  const std::string xfer_path = o.xfer.empty() ? self_path() : fs::absolute(o.xfer).string();
  if (!spec.study.results.resolved())
    throw Error::input(spec.study.results.where.str() + ": results \"" + spec.study.results.raw + "\" names ${" +
                       spec.study.results.unset_var + "}, unset here; set it (or use a literal path) before submitting");
  const std::string results = spec.study.results.path;
  const std::string log_dir = o.log_dir.empty() ? (fs::path(results).parent_path() / "logs").string()
                                                : fs::absolute(o.log_dir).lexically_normal().string();
  check_path("spec", spec_path, false);
  check_path("xfer binary", xfer_path, false);
  check_path("log folder", log_dir, true);

  const std::string tpl = o.array > 1 ? "array" : o.preemptible ? "preemptible" : o.nodes > 1 ? "multi_node" : "one_node";
  std::string body = jobscript_body(tpl);
  std::ostringstream s;
  s << "#!/bin/bash\n# Rendered by `xfer submit` (xfer " << build_info::version() << ") from jobscripts/" << tpl
    << ".sbatch; everything after the #SBATCH lines is that script's.\n";
  s << "#SBATCH --job-name=" << job_name << "\n";
  s << "#SBATCH --nodes=" << o.nodes << "\n";
  s << "#SBATCH --ntasks-per-node=" << ranks << "\n";
  if (o.gpus_per_node > 0) s << "#SBATCH --gpus-per-node=" << o.gpus_per_node << "\n";
  s << "#SBATCH --cpus-per-task=" << cpus << "\n";
  s << "#SBATCH --time=" << o.time << "\n";
  s << "#SBATCH --output=" << log_dir << (o.array > 1 ? "/xfer-%A_%a.out" : "/xfer-%j.out") << "\n";
  if (!o.partition.empty()) s << "#SBATCH --partition=" << o.partition << "\n";
  if (!o.account.empty()) s << "#SBATCH --account=" << o.account << "\n";
  if (o.preemptible)
    s << "#SBATCH --signal=B:USR2@" << o.signal_seconds << "\n#SBATCH --requeue\n#SBATCH --open-mode=append\n";
  if (o.array > 1) s << "#SBATCH --array=0-" << o.array - 1 << "\n";
  s << "SPEC=" << shell_quote(spec_path) << "\nXFER=" << shell_quote(xfer_path) << "\nexport SPEC XFER\n";
  s << body;
  const std::string script = s.str();
  if (o.dry_run) {
    std::cout << script;
    return 0;
  }
  fs::create_directories(log_dir);
  const fs::path jobs = fs::path(results).parent_path() / "jobs";
  fs::create_directories(jobs);
  char stamp[32];
  const std::time_t now = std::time(nullptr);
  std::strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", std::gmtime(&now));
  const fs::path file = jobs / (job_name + "-" + stamp + ".sbatch");
  std::ofstream(file) << script;
  fs::permissions(file, fs::perms::owner_exec, fs::perm_options::add);
  std::string id = run_captured({"sbatch", "--parsable", file.string()});
  id = id.substr(0, id.find_first_of(";\n"));
  std::cout << "submitted job " << id << " (" << file.string() << ")\n";
  if (o.array > 1) {
    std::string merge = shell_quote(xfer_path) + " merge " + shell_quote(results);
    for (int i = 0; i < o.array; ++i) {
      sweep::RunOptions r;
      r.shard = i;
      r.shards = o.array;
      merge += " " + shell_quote(sweep::results_path(r, results));
    }
    std::vector<std::string> argv = {"sbatch", "--parsable", "--dependency=afterany:" + id,
                                     "--job-name=" + job_name + "-merge", "--output=" + log_dir + "/xfer-merge-%j.out",
                                     "--time=01:00:00", "--ntasks=1"};
    if (!o.partition.empty()) argv.push_back("--partition=" + o.partition);
    if (!o.account.empty()) argv.push_back("--account=" + o.account);
    argv.insert(argv.end(), {"--wrap", merge});
    std::string mid = run_captured(argv);
    mid = mid.substr(0, mid.find_first_of(";\n"));
    std::cout << "submitted merge job " << mid << " (runs after array job " << id << ")\n";
  }
  return 0;
}


Command submit_command(CLI::App& cli) {
  auto o = std::make_shared<SubmitOptions>();
  auto* sub = cli.add_subcommand("submit", "Render the job script for a SLURM request and submit it (sbatch)");
  sub->add_option("spec", o->spec, "experiment spec (TOML)")->required();
  sub->add_option("--nodes", o->nodes, "nodes (default 1)");
  sub->add_option("--gpus-per-node", o->gpus_per_node, "GPUs per node (0: a CPU job)");
  sub->add_option("--ranks-per-node", o->ranks_per_node, "ranks per node (default: one per GPU, else 1)");
  sub->add_option("--cpus-per-task", o->cpus_per_task, "cores per rank (default 8 with GPUs, 4 without)")
      ->check(at_least(1));
  sub->add_option("--time", o->time, "time limit: minutes, HH:MM:SS or D-HH:MM:SS (SLURM jobs)");
  sub->add_option("--partition", o->partition, "SLURM partition");
  sub->add_option("--account", o->account, "SLURM account");
  sub->add_option("--job-name", o->job_name, "default: xfer-<study>");
  sub->add_flag("--preemptible", o->preemptible, "checkpoint on USR2 before the end and requeue while work remains");
  sub->add_option("--signal-seconds", o->signal_seconds, "preemptible: warning before the end (default 300)");
  sub->add_option("--array", o->array, "a job array of K shards, and a merge job after it");
  sub->add_option("--gflops-per-gpu", o->gflops_per_gpu, "assumed speed for the time check (default 20000)")
      ->check(at_least(0, true));
  sub->add_option("--gflops-per-core", o->gflops_per_core, "assumed speed per core without GPUs (default 40)")
      ->check(at_least(0, true));
  sub->add_option("--xfer", o->xfer, "the xfer binary the job runs (default: this one)");
  sub->add_option("--log-dir", o->log_dir, "job logs (default: <results folder>/logs)");
  sub->add_flag("--dry-run", o->dry_run, "print the script; submit nothing");
  sub->add_option("--tpu-chips", o->tpu_chips, "TPU through PJRT: chips per TPU VM host (the tpu_vm/tpu_pod script)")
      ->check(at_least(1));
  sub->add_option("--tpu-hosts", o->tpu_hosts, "TPU pod slice: hosts (one process per host)")->check(at_least(1));
  sub->add_option("--tpu-hostfile", o->tpu_hostfile, "TPU pod slice: the workers, one per line");
  sub->add_option("--pjrt-plugin", o->pjrt_plugin, "TPU: the PJRT plugin (default: libtpu.so of the libtpu wheel)");
  return {sub, nullptr, [o](sweep::MpiRuntime*) { return submit(*o); }};
}

}  // namespace xfer::app
