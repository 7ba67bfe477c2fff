// sweep/progress: the live progress line rank 0 prints while the sweep runs.
#pragma once

#include <cstddef>
#include <string>

namespace xfer::sweep {

struct Progress {
  size_t done = 0, total = 0, running = 0, pending = 0, failed = 0, diverged = 0;
  double elapsed_s = 0;
  double done_gflop = 0, remaining_gflop = 0;  // by the cost model: the ETA extrapolates the rate so far
  bool stopping = false;
};

std::string progress_line(const Progress& p);

}  // namespace xfer::sweep
