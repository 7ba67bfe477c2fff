// sweep/ledger: what a trial's record in the results file means for this run, and what starting it or a finished
// report does to that record — the exactly-once rules of the README's "After a failure". Pure: statuses are
// xfer::TrialStatus, attempts are counts; no MPI, no HDF5, no clock.
#pragma once

#include <optional>
#include <string_view>

#include "xfer/core/vocabulary.hpp"

namespace xfer::sweep {

// The decision for one trial of the spec.
enum class Action {
  done,       // finished: never again
  final,      // diverged: a result, not a failure; never again
  resume,     // running (orphaned by a killed job) or interrupted: continue from its checkpoint
  retry,      // failed or out of memory with attempts left: from scratch
  fresh,      // not in the file yet, or pending
  exhausted,  // failed or out of memory max_attempts times: stays failed
};
std::string_view action_name(Action a);  // as `xfer run --dry-run` prints it
// Whether the trial is in this run's queue.
constexpr bool runs(Action a) { return a == Action::fresh || a == Action::resume || a == Action::retry; }

// `status`: the trial's status in the file, nullopt when it has no row.
Action decide(std::optional<TrialStatus> status, int attempts, int max_attempts);

// Starting a queued trial: the attempt it runs as (a fresh start or a retry counts one more, a resume does not),
// and whether its old checkpoints go first (a retry starts from scratch: they may be what failed).
struct Start {
  int attempts = 0;
  bool clear_checkpoints = false;
};
Start on_start(Action a, int attempts);

// What a trial's end — its group's finished report, or the group declared hung — does in this run.
struct Finish {
  TrialStatus status = TrialStatus::failed;  // the row's new status
  bool final = false;               // done or diverged: the selected epoch's predictions are recorded
  bool retry = false;               // failed or out of memory with attempts left: queued again in this run
  bool exhausted = false;           // failed or out of memory with no attempts left
  bool remove_checkpoints = false;  // the trial will not run again (final or exhausted)
  bool stop_sweep = false;          // interrupted while the sweep was not stopping: a stop only this group saw
  bool environment_stop = false;    // the machine's fault (disk full, I/O error, no device): the sweep stops
};
// `attempts`: the row's count, this attempt included. `cause`: whose fault an end that is not done is —
//   trial        failed / out of memory: retried while attempts are left
//   input        failed on its data or spec: not retried in this run (nothing would change); the next run retries
//   environment  the trial is not at fault: it stays resumable (interrupted; this attempt goes on next run), a
//                result it has is kept, and the sweep stops
Finish on_finish(TrialStatus reported, int attempts, int max_attempts, bool sweep_stopping, Cause cause = Cause::none);
// A group silent past the heartbeat timeout: its trial failed (hung or dead), retried like any failure.
Finish on_hung(int attempts, int max_attempts);

}  // namespace xfer::sweep
