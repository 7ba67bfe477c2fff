// sweep/heartbeat: when a busy group's leader sends the coordinator a heartbeat — every `interval` seconds while its
// trial moves, none once it stands still. The trial's progress count (training steps and evaluation batches,
// train::Environment::progress) is looked at on each tick; before the first step (backbone, data, input cache) there
// is nothing to count and the heartbeat goes on. After that, a count unchanged for half the hung timeout silences it,
// so a group stuck in NCCL or MPI (gpu-review H4) falls silent and the coordinator's hung check (Scheduler::take_hung,
// after `hung_timeout` of silence) fires: at most 1.5 × hung_timeout + one interval after the last step. Pure: time is
// passed in, as seconds on one monotonic clock (the worker's companion thread ticks it every 50 ms).
#pragma once

#include <cstdint>

namespace xfer::sweep {

class Heartbeat {
 public:
  Heartbeat(double interval, double hung_timeout, double now);
  // The trial's progress count at `now`: true when a heartbeat is due (and counted as sent).
  bool due(int64_t progress, double now);
  // Whether the trial has stood still for half the hung timeout (since its last tick).
  bool stalled() const { return stalled_; }

 private:
  double interval_, hung_timeout_;
  double last_sent_, moved_;
  int64_t seen_ = 0;
  bool stalled_ = false;
};

}  // namespace xfer::sweep
