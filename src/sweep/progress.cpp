#include "progress.hpp"

#include <cmath>

#include <fmt/format.h>

namespace xfer::sweep {

std::string progress_line(const Progress& p) {
  std::string eta = "–";
  if (p.done_gflop > 0 && p.remaining_gflop > 0) {
    const double s = p.remaining_gflop * p.elapsed_s / p.done_gflop;
    eta = fmt::format("{}h{:02d}m", static_cast<int>(s / 3600), static_cast<int>(std::fmod(s, 3600) / 60));
  }
  return fmt::format("[xfer] {}/{} done · {} running · {} pending · {} failed · {} diverged · {:.0f}s elapsed · ETA {}{}\n",
                     p.done, p.total, p.running, p.pending, p.failed, p.diverged, p.elapsed_s, eta,
                     p.stopping ? " · stopping" : "");
}

}  // namespace xfer::sweep
