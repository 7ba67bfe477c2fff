// sweep/scheduler: which idle ranks get which trial, and when the sweep is over — longest first by the cost model,
// a trial started only if an epoch of it fits before the deadline, a silent group declared hung, a job array's
// shards. Pure: no MPI, no HDF5; time is passed in, as seconds on one monotonic clock.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <utility>
#include <vector>

namespace xfer::sweep {

class Scheduler {
 public:
  struct Job {
    int64_t trial = -1;
    double cost_gflop = 0;  // the cost model's
    int ranks = 1;          // ranks_per_trial
    int epochs = 1;
  };
  struct Assignment {
    int64_t trial = -1;
    std::vector<int> members;  // ascending; members[0] leads
  };
  struct Dispatch {
    std::vector<Assignment> starts;
    std::vector<int64_t> too_wide;     // need more ranks than this job has alive: they can never run here
    std::vector<int64_t> out_of_time;  // an epoch would not finish before the deadline: left pending
  };
  struct Hung {
    int64_t trial = -1;
    std::vector<int> members;
    double silent_s = 0;
  };
  // no_ranks: every rank was taken out as hung while trials are left: nothing can run them in this job.
  enum class End { no, finished, stragglers, no_ranks };

  // `deadline`: when to stop on our own (0: never).
  Scheduler(int world_size, double deadline);

  void add(const Job& j);  // queue a trial (again, for a retry)
  void ready(int rank);    // a rank reports idle; a rank taken out as hung is back
  // Hands the idle ranks out: repeatedly the costliest pending trial whose group fits in the idle ranks, to the
  // lowest idle ranks. Nothing while stopping.
  Dispatch dispatch(double now);
  void heartbeat(int64_t trial, double now);
  // Groups silent for `timeout` seconds or more: no longer running, their ranks not given work until they report.
  std::vector<Hung> take_hung(double now, double timeout);
  // The finished report of `trial` from `rank`: true when it ends the trial's current run (its leader reports);
  // false for a group declared hung meanwhile. The rank is idle again either way.
  bool finish(int64_t trial, int rank);
  // One epoch of `trial` took `seconds` (its group's wall time): the throughput the deadline rule uses.
  void record_epoch(int64_t trial, double seconds);

  void stop(double now);  // nothing more is dispatched; running trials are being stopped
  bool stopping() const { return stop_time_.has_value(); }
  bool past_deadline(double now) const { return deadline_ > 0 && now > deadline_; }
  // finished: nothing left to start (or stopping), nothing running, every live rank idle. stragglers: stopping,
  // nothing running, but some live ranks have not reported within `grace` seconds of the stop.
  End over(double now, double grace) const;

  double seconds_per_gflop() const { return epoch_gflop_ > 0 ? epoch_seconds_ / epoch_gflop_ : 0; }
  size_t pending() const;
  size_t running() const { return running_.size(); }
  size_t idle() const { return idle_.size(); }
  size_t alive() const { return static_cast<size_t>(world_size_) - hung_.size(); }
  const std::set<int>& idle_ranks() const { return idle_; }
  const std::set<int>& hung_ranks() const { return hung_; }
  // The running trials and their groups.
  std::map<int64_t, std::vector<int>> running_groups() const;

 private:
  struct Running {
    std::vector<int> members;
    double last_seen = 0;
  };
  int world_size_;
  double deadline_;
  std::map<int64_t, Job> jobs_;
  std::map<int, std::set<std::pair<double, int64_t>>> pending_;  // ranks → (-cost, trial)
  std::map<int64_t, Running> running_;
  std::set<int> idle_, hung_;
  std::optional<double> stop_time_;
  double epoch_gflop_ = 0, epoch_seconds_ = 0;
};

// When to stop on our own, should no signal come: `grace` seconds before the allocation's `end`, but never more
// than a fifth of the allocation (a grace meant for a four-hour job must not swallow a one-minute one). 0: no end.
double stop_deadline(double start, double end, double grace);

// A job array's share of the trials: every `shards`-th by cost (costliest first, ties in spec order), starting
// at `shard`, returned in spec order. All of them when shards ≤ 1.
std::vector<size_t> shard_of(const std::vector<double>& cost, int shard, int shards);

}  // namespace xfer::sweep
