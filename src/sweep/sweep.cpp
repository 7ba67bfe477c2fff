// `xfer run`: rank 0 reads the spec, resolves and costs every trial and decides from the ledger what runs; it then
// runs the coordinator beside its own worker. The other ranks only run workers, which never see the spec.
#include "xfer/sweep/sweep.hpp"

#include <boost/mpi/collectives.hpp>
#include <boost/mpi/communicator.hpp>
#include <boost/serialization/string.hpp>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <set>
#include <thread>
#include <unordered_map>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "coordinator.hpp"
#include "slurm.hpp"
#include "study_setup.hpp"
#include "transport.hpp"
#include "worker.hpp"
#include "xfer/core/build_info.hpp"
#include "xfer/core/error.hpp"
#include "xfer/core/stop.hpp"
#include "xfer/train/pjrt_checks.hpp"
#include "xfer/train/trial.hpp"

namespace fs = std::filesystem;
namespace bmpi = boost::mpi;

namespace xfer::sweep {

std::string results_path(const RunOptions& o, const std::string& spec_results) {
  if (!o.results.empty()) return o.results;
  if (o.shards <= 1) return spec_results;
  const fs::path p(spec_results);
  return (p.parent_path() / (p.stem().string() + fmt::format(".shard-{}-of-{}", o.shard, o.shards) + p.extension().string())).string();
}

namespace {

// Everything rank 0 sets up before the first order.
struct Setup {
  Study study;
  Prepared prep;
  std::unique_ptr<store::WriterLock> lock;
  std::unique_ptr<store::Results> results;
  std::vector<Coordinator::Job> jobs;
  std::vector<store::TrialRow> rows;
};

// Before the first trial: the PJRT bundle of every trial this run starts, found and whole (its programs hashed, one
// for an epoch's last batch). A bundle fault is the same on every attempt: refused here (exit 2) it costs no trial an
// attempt, and the rerun after the export runs them all (reliability probe 3, BAD-1).
void check_bundles(const Setup& s, const RunOptions& o) {
  if (!train::is_pjrt_device(o.device) || o.simulate > 0) return;
  std::set<std::string> checked;
  for (const auto& j : s.jobs) {
    const auto& t = s.study.trials[static_cast<size_t>(j.trial)];
    const ResolvedTrial r = resolve_trial(s.study, s.prep, static_cast<size_t>(j.trial), o);
    if (!t.config.upstream.empty() || !fs::is_regular_file(r.backbone)) continue;  // exported by an upstream trial
    const auto& d = s.prep.datasets.at(t.dataset_index);
    const auto& c = t.config;
    if (!checked.insert(fmt::format("{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}", r.backbone, t.dataset_index, c.input_size,
                                    c.batch_size, name(c.optimizer), c.beta1, c.beta2, c.eps, c.momentum, c.nesterov,
                                    c.label_smoothing)).second)
      continue;
    try {
      train::check_pjrt_bundle(t.config, r.backbone, d);
    } catch (const Error& e) {
      throw Error::input(fmt::format("trial {} ({} on {}): {}. No trial was started; once the bundle is fixed the same "
                                     "command runs them all", t.key.str(), t.config.model, d.name, e.what()));
    }
  }
}

// The ledger: the file's rows for the spec's trials (new ones added), and what of this run's shard runs.
void read_ledger(Setup& s, const RunOptions& o) {
  const auto& trials = s.study.trials;
  std::unordered_map<std::string, store::TrialRow> existing;
  {
    auto all = s.results->trials();
    // A damaged row (checksum mismatch) is not to be resumed, retried or "repaired" with garbage in it: refuse
    // before anything is written.
    std::string damaged;
    size_t n_damaged = 0;
    for (const auto& r : all)
      if (!r.damage.empty() && n_damaged++ < 5) damaged += (damaged.empty() ? "" : "; ") + store::describe_row(r);
    if (n_damaged > 0)
      throw Error::input(fmt::format(
          "{}: {} row(s) of /trials are corrupted (checksum mismatch): {}{}. The file was not modified. To recover: "
          "`xfer merge NEW.h5 {}` copies every intact row into NEW.h5 (the corrupted ones are listed as conflicts), "
          "then `xfer run {} --results NEW.h5` runs those trials again; or move the file aside (mv {} {}.corrupt) "
          "and restore a copy (h5repack copies a file but cannot mend a row)",
          s.prep.results_path, n_damaged, damaged, n_damaged > 5 ? "; …" : "", s.prep.results_path, o.spec,
          s.prep.results_path, s.prep.results_path));
    existing.reserve(all.size());
    for (auto& r : all) existing.emplace(r.key, std::move(r));
  }
  std::vector<store::TrialRow> fresh;
  std::vector<bool> in_shard(trials.size(), false);
  for (size_t i : shard_of(s.prep.cost, o.shard, o.shards)) in_shard[i] = true;
  for (size_t i = 0; i < trials.size(); ++i) {
    const auto& t = trials[i];
    auto it = existing.find(t.key.str());
    const bool known = it != existing.end();
    store::TrialRow row = known ? it->second : fresh_row(s.study.spec, t, s.prep.cost[i]);
    if (!known && in_shard[i]) fresh.push_back(row);  // another shard's trials stay out
    row.order = static_cast<int64_t>(i);
    row.cost_gflop = s.prep.cost[i];
    const Action a = known ? decide(try_parse<TrialStatus>(it->second.status), it->second.attempts,
                                    s.study.spec.study.max_attempts)
                           : decide(std::nullopt, 0, s.study.spec.study.max_attempts);
    if (in_shard[i] && runs(a)) s.jobs.push_back({static_cast<int64_t>(i), a});
    s.rows.push_back(std::move(row));
  }
  check_bundles(s, o);
  s.results->add_trials(fresh);
}

void set_up(Setup& s, const RunOptions& o) {
  s.study = read_study(o.spec);
  // A shard's downstream trial would wait for an upstream trial another shard runs: not supported yet.
  if (o.shards > 1 && !s.study.spec.upstreams.empty())
    throw Error::input(fmt::format("{}: [[upstream]] stages do not run as a job array (--shard {}/{}) yet: a shard's "
                                   "downstream trials would wait for pre-training trials of other shards. Run the study "
                                   "as one job (xfer submit without --array)", o.spec, o.shard, o.shards));
  s.prep = prepare(s.study, o);
  s.lock = std::make_unique<store::WriterLock>(s.prep.results_path);
  s.results = std::make_unique<store::Results>(
      store::Results::open_or_create(s.prep.results_path, s.study.spec.study.name, s.study.spec.text));
  // Another study, another spec (without --extend) or another split: refused before anything is written.
  s.results->check_run(s.study.spec.study.name, s.study.spec.text, split_hashes(s.prep), o.extend);
  read_ledger(s, o);
  // The run that held the lock before was killed: its /runs row still says "running".
  s.results->close_stale_runs(s.lock->took_over() ? "killed (lock taken over)" : "killed (no end recorded)");
}

// Why the run cannot start, as rank 0 tells the others: an Error's kind and message (empty: it can).
struct SetupFailure {
  int kind = 0;
  std::string second;
  template <class A>
  void serialize(A& a, unsigned) {
    a& kind& second;
  }
};

// The run's row in /runs, and what the run's end means for the exit status: an error or an environment fault
// (thrown: exit 1 or 74), stopped with work left (75), trials that met a fault of their data or spec (thrown: 2),
// trials failed (4), or everything of the queue finished (0).
int end_of_run(Setup& s, const Coordinator& coord, int64_t run_row, store::RunRow& run_info) {
  run_info.finished_at = store::now_unix();
  run_info.end_reason = coord.end_reason();
  run_info.trials_run = coord.trials_run();
  try {
    s.results->end_run(run_row, run_info);
  } catch (const std::exception& e) {
    // The run's own row is bookkeeping: the trials' rows are written already. Say so, but do not let it hide why
    // the run ended.
    spdlog::error("{}: could not record the end of this run in /runs: {}", s.prep.results_path, e.what());
    if (!coord.error() && coord.environment_fault().empty()) throw;
  }
  if (coord.error()) std::rethrow_exception(coord.error());
  const auto o = coord.outcome();
  if (!coord.environment_fault().empty())
    throw Error::environment(fmt::format(
        "the sweep stopped: {}. This is not the trials' fault and cost them no attempt: {} trial(s) stay resumable. "
        "Fix it (free space, check the device) and rerun the same command", coord.environment_fault(), o.left + o.failed));
  if (!coord.hung_out().empty()) throw Error(coord.hung_out());
  if (o.left > 0) {
    spdlog::warn("stopped early ({}): {} trial(s) left to a later run, which resumes them; exit status {}",
                 coord.end_reason(), o.left, exit_status::stopped);
    return exit_status::stopped;
  }
  if (!coord.input_faults().empty()) {
    const auto& first = coord.input_faults().front();
    throw Error::input(fmt::format(
        "{} trial(s) met a fault of their data or spec, the same on every attempt (first: {}). They spent no attempt: "
        "fix it and rerun the same command, which runs them (xfer status {} groups them by message)",
        coord.input_faults().size(), first.size() > 600 ? first.substr(0, 600) + "…" : first, s.prep.results_path));
  }
  if (o.failed > 0) {
    spdlog::warn("{} trial(s) failed (xfer status {} groups them by message); exit status {}", o.failed,
                 s.prep.results_path, exit_status::trials_failed);
    return exit_status::trials_failed;
  }
  return exit_status::ok;
}

}  // namespace

int run(const RunOptions& o, MpiRuntime& mpi) {
  bmpi::communicator world;
  Transport transport = Transport::over_world();
  const double start = store::now_unix();
  // Rank 0 reads and checks everything first; the others wait for its verdict. Only rank 0 reads the spec. Every
  // rank first checks that it can use --device: a device that is not there fails every trial alike, so it is
  // refused here, before anything is written.
  SetupFailure failure;
  {
    std::string here;
    try {
      here = train::device_problem(o.device);
    } catch (const std::exception& e) {
      here = std::string("--device ") + o.device + ": " + e.what();
    }
    std::vector<std::string> all;
    bmpi::gather(world, here.empty() ? here : fmt::format("rank {} on {}: {}", mpi.rank(), host_name(), here), all, 0);
    if (mpi.rank() == 0)
      for (const auto& p : all)
        if (!p.empty()) {
          const bool syntax = !train::device_syntax_problem(o.device).empty();
          failure.kind = static_cast<int>(syntax ? Error::Kind::input : Error::Kind::environment);
          failure.second = (syntax ? train::device_syntax_problem(o.device) : p) + "; nothing was written";
          break;
        }
  }
  Setup s;
  if (mpi.rank() == 0 && failure.second.empty()) {
    try {
      set_up(s, o);
    } catch (const Error& e) {
      failure.kind = static_cast<int>(e.kind()), failure.second = e.what();
    } catch (const std::exception& e) {
      failure.kind = static_cast<int>(Error::Kind::runtime), failure.second = e.what();
    }
  }
  bmpi::broadcast(world, failure, 0);
  if (!failure.second.empty()) {
    const auto kind = static_cast<Error::Kind>(failure.kind);
    if (mpi.rank() != 0)
      return kind == Error::Kind::input ? exit_status::input
             : kind == Error::Kind::environment ? exit_status::environment : exit_status::error;
    throw Error(failure.second, kind);
  }
  std::vector<std::string> hosts;
  bmpi::gather(world, host_name(), hosts, 0);

  install_default_stop_handlers();
  if (mpi.rank() == 0 && started_by_open_mpi_launcher()) {
    const char* v = std::getenv("OMPI_MCA_odls_base_sigkill_timeout");
    const int kill_wait = v && *v ? std::atoi(v) : 1;
    if (kill_wait < 10)
      spdlog::info("a SIGTERM or Ctrl-C to mpirun itself leaves the ranks {} s before mpirun's SIGKILL (Open MPI's "
                   "odls_base_sigkill_timeout, twice over): too little to checkpoint. Stop the sweep with kill -USR2 on "
                   "mpirun (forwarded at once; jobscripts/workstation.sh does so on Ctrl-C), or export "
                   "OMPI_MCA_odls_base_sigkill_timeout=20 before mpirun (README, \"On a workstation\")",
                   2 * kill_wait);
  }
  // Whatever a rank is stuck in, a stop ends this process within the documented bound (README: --grace + 30 s).
  arm_stop_watchdog(o.grace + 30, exit_status::stopped);
  std::unique_ptr<Coordinator> coord;
  std::thread coord_thread;
  int64_t run_row = -1;
  store::RunRow run_info;
  if (mpi.rank() == 0) {
    write_study(s.study, s.prep, *s.results, mpi.size(), hosts);
    run_info.host = host_name();
    run_info.slurm_job_id = slurm_variable("SLURM_JOB_ID");
    run_info.git_commit = build_info::git_commit().substr(0, 40);
    run_info.started_at = start;
    run_info.ranks = mpi.size();
    run_info.input_pipeline = o.input_pipeline;  // rank 0's; each trial's rank group agrees on it (MpiGroup::agree)
    run_info.end_reason = "running";
    run_row = s.results->begin_run(run_info);
    size_t resumes = 0, retries = 0, fresh = 0;
    for (const auto& j : s.jobs)
      resumes += j.action == Action::resume, retries += j.action == Action::retry, fresh += j.action == Action::fresh;
    spdlog::info("{}: {} trials in the spec; {} to run ({} new, {} to resume, {} to retry) on {} rank(s)",
                 s.prep.results_path, s.study.trials.size(), s.jobs.size(), fresh, resumes, retries, mpi.size());
    const double end = o.time_limit > 0 ? start + o.time_limit : slurm_end_time();
    coord = std::make_unique<Coordinator>(s.study, s.prep, o, transport, *s.results, *s.lock, std::move(s.rows), s.jobs,
                                          stop_deadline(start, end, o.grace));
    coord_thread = std::thread([&] { (*coord)(); });
  }
  // The worker gets the options and the transport, nothing of the spec.
  Worker worker(o, mpi, transport);
  std::exception_ptr worker_error;
  try {
    worker.loop();
  } catch (...) {
    worker_error = std::current_exception();
  }
  // Rank 0 decides the exit status; every rank returns it (mpirun reports the first non-zero one).
  int status = exit_status::ok;
  std::exception_ptr failure_here;
  if (mpi.rank() == 0) {
    coord_thread.join();
    try {
      status = end_of_run(s, *coord, run_row, run_info);
    } catch (const Error& e) {
      failure_here = std::current_exception();
      status = e.kind() == Error::Kind::environment ? exit_status::environment
               : e.kind() == Error::Kind::input     ? exit_status::input
                                                    : exit_status::error;
    } catch (...) {
      failure_here = std::current_exception();
      status = exit_status::error;
    }
  }
  bmpi::broadcast(world, status, 0);
  // Every rank reaches the barrier before rank 0 throws (exit 2 or 74): the others would otherwise wait in it for ever,
  // and rank 0 in MPI_Finalize for them.
  world.barrier();
  if (failure_here) std::rethrow_exception(failure_here);
  if (worker_error) std::rethrow_exception(worker_error);
  return status;
}

}  // namespace xfer::sweep
