// sweep/coordinator: rank 0's glue — the scheduler's decisions sent as orders over the transport, the workers'
// reports turned into ledger effects and results-file writes, stop signals and the deadline honoured.
#pragma once

#include <chrono>
#include <exception>
#include <map>
#include <string>
#include <vector>

#include "study_setup.hpp"
#include "transport.hpp"
#include "xfer/store/store.hpp"
#include "xfer/sweep/ledger.hpp"
#include "xfer/sweep/scheduler.hpp"

namespace xfer::sweep {

class Coordinator {
 public:
  struct Job {
    int64_t trial;
    Action action;
  };

  Coordinator(const Study& study, const Prepared& prep, const RunOptions& o, Transport transport,
              store::Results& results, store::WriterLock& lock, std::vector<store::TrialRow> rows,
              const std::vector<Job>& jobs, double deadline_unix);

  std::string end_reason() const { return end_reason_; }
  int64_t trials_run() const { return finished_; }
  std::exception_ptr error() const { return error_; }
  // Non-empty when an environment fault (disk full, I/O error, no such device) stopped the sweep: its message.
  const std::string& environment_fault() const { return environment_fault_; }
  // Non-empty when every rank group was declared hung and the sweep ended with trials left.
  const std::string& hung_out() const { return hung_out_; }
  // Trials that ended on a fault of their data or spec (the same on every attempt): "key (model on dataset): message",
  // in the order they ended. They spent no attempt.
  const std::vector<std::string>& input_faults() const { return input_faults_; }
  // This run's queue at the end: trials with a result (done, diverged), failed (this run's last word), and left to
  // a later run (pending, interrupted, running).
  struct Outcome {
    size_t finished = 0, failed = 0, left = 0;
  };
  Outcome outcome() const;

  // The coordinator's thread.
  void operator()();

 private:
  using Clock = std::chrono::steady_clock;
  double now() const;  // seconds on the scheduler's clock
  void loop();
  void abandon();
  void watch_time_and_signals();
  void stop_sweep(const std::string& why);
  void check_hung();
  void dispatch();
  void start(int64_t t, const std::vector<int>& members);
  void handle(const Report& r);
  void finish(const Report& r);
  void requeue(int64_t t);
  void queue(int64_t t);
  // The upstream stage: a downstream trial waits for its pre-training trial; one whose pre-training trial ended
  // without a backbone (diverged, failed for good) is recorded failed, naming it, without spending an attempt.
  void upstream_ended(int64_t upstream, const store::TrialRow& row, bool done, bool will_run_again);
  void block(int64_t t, const store::TrialRow& upstream);
  void progress(bool final);

  // The results-file writes, one function per event.
  void record_unrunnable(store::TrialRow& row, int ranks, size_t alive);
  void record_hung(store::TrialRow& row, int leader, double silent_s);
  void record_assigned(const store::TrialRow& row);
  void record_started(const store::TrialRow& row);
  void record_epoch(const store::TrialRow& row, const train::EpochRecord& e);
  void record_finished(const store::TrialRow& row, const Report& r, const std::string& dataset, bool final);
  static store::CurveRow curve_row(const store::TrialRow& row, const train::EpochRecord& e);

  const Study& study_;
  const Prepared& prep_;
  const RunOptions& o_;
  Transport transport_;
  store::Results& results_;
  store::WriterLock& lock_;
  std::vector<store::TrialRow> rows_;  // by trial index
  const std::vector<double>& cost_;
  double deadline_unix_;
  Scheduler scheduler_;
  std::map<int64_t, Action> action_;
  std::map<int64_t, std::vector<int64_t>> waiting_;  // upstream trial → downstream trials of this run waiting for it
  std::vector<int64_t> blocked_;                       // their upstream trial will not run in this run
  std::vector<int64_t> skipped_for_time_;
  std::string end_reason_;
  std::exception_ptr error_;
  std::string environment_fault_, hung_out_;
  std::vector<std::string> input_faults_;
  std::map<int64_t, int> attempts_before_;  // a started trial's attempts before this start counted one
  int64_t finished_ = 0;
  size_t total_jobs_ = 0;
  int tags_ = 0;
  double remaining_cost_ = 0, done_cost_ = 0;
  Clock::time_point started_, last_progress_{};
};

}  // namespace xfer::sweep
